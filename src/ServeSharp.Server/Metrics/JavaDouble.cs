using System.Globalization;

namespace ServeSharp.Server.Metrics;

/// <summary>
/// A double as Java's <c>Double.toString</c> prints it, which is how TorchServe's frontend writes metric values into
/// its log lines: at least one decimal (<c>1.0</c>, <c>83.13</c>) between 10⁻³ and 10⁷, and <c>1.0E7</c> /
/// <c>2.5E-4</c> outside; the digits are the shortest that read back as the same double (as .NET's own).
/// </summary>
internal static class JavaDouble
{
    public static string Format(double value)
    {
        if (double.IsNaN(value)) return "NaN";
        if (double.IsInfinity(value)) return value > 0 ? "Infinity" : "-Infinity";
        if (value == 0) return double.IsNegative(value) ? "-0.0" : "0.0";
        var shortest = value.ToString("R", CultureInfo.InvariantCulture);
        var magnitude = Math.Abs(value);
        if (magnitude is >= 1e-3 and < 1e7 && !shortest.Contains('E', StringComparison.Ordinal))
            return shortest.Contains('.', StringComparison.Ordinal) ? shortest : shortest + ".0";

        // Scientific: the shortest digits d1 d2 ... and the decimal exponent, as d1.d2...E<exponent>.
        var sign = value < 0 ? "-" : "";
        var text = shortest.TrimStart('-');
        var exponent = 0;
        if (text.IndexOf('E', StringComparison.Ordinal) is var e and >= 0)
        {
            exponent = int.Parse(text[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            text = text[..e];
        }
        var point = text.IndexOf('.', StringComparison.Ordinal) is var p and >= 0 ? p : text.Length;
        var digits = text.Replace(".", "", StringComparison.Ordinal);
        var leading = digits.Length - digits.TrimStart('0').Length;
        digits = digits.Trim('0');
        exponent += point - leading - 1;
        var fraction = digits.Length > 1 ? digits[1..] : "0";
        return $"{sign}{digits[0]}.{fraction}E{exponent.ToString(CultureInfo.InvariantCulture)}";
    }
}
