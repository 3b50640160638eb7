using System.Globalization;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// Python's <c>repr</c> of a float32 widened to double (what <c>json.dumps(tensor.tolist())</c> writes): the
/// shortest decimal that reads back as that double, the nearest such when several are equally short.
/// Probabilities of a softmax over at most 255 classes lie in [1/255, 1]; for those this is exact integer
/// arithmetic on the float's 24-bit significand (a few 128-bit multiplies, no digit-by-digit search),
/// several times faster than general double formatting. Anything else takes .NET's shortest round-trip path.
/// </summary>
internal static class PythonFloat
{
    private static readonly UInt128[] Pow10 = PowersOfTen(21);

    /// <summary>Writes the text into <paramref name="destination"/> (at least 32 bytes) and returns its length.</summary>
    public static int Format(float value, Span<byte> destination)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        var biased = (int)(bits >> 23);
        // Positive, normal, and in [2^-8, 1]: biased exponent 119..126, or exactly 1.0.
        if (biased is < 119 or > 127 || (biased == 127 && (bits & 0x7FFFFF) != 0)) return General(value, destination);

        // value = m · 2^q exactly. In units of 2^-s (s = 31 − q), value = m·2^31 and the double's rounding interval
        // reaches 2 units up and 2 down (1 down when m is a power of two: the double below is closer). The
        // significand is even, so a decimal exactly on a boundary still reads back as this double.
        var m = (ulong)(bits & 0x7FFFFF | 0x800000);
        var q = biased - 150;
        var s = 31 - q;
        var x = m << 31;
        ulong below = m == 0x800000 ? 1UL : 2UL, above = 2;

        // p decimals give the value 17 significant digits (0.1 ≤ value < 1 → 17; 0.01 → 18; 0.001 → 19; 1.0 → 16).
        // (compared as doubles: 0.01f is a little below 0.01)
        var d = (double)value;
        var p = d >= 1 ? 16 : d >= 0.1 ? 17 : d >= 0.01 ? 18 : 19;
        var exact = (UInt128)x * Pow10[p];
        var hi = (ulong)(((UInt128)(x + above) * Pow10[p]) >> s);
        var lo = (ulong)(((UInt128)(x - below) * Pow10[p] + ((UInt128)1 << s) - 1) >> s);

        // Drop trailing digits while the interval still holds a multiple of the coarser unit.
        var t = 0;
        while (hi / 10 >= (lo + 9) / 10)
        {
            hi /= 10;
            lo = (lo + 9) / 10;
            t++;
        }
        // The nearest multiple of 10^t to the exact value (ties to even), kept inside the interval.
        var step = (ulong)Pow10[t];
        var digits = (ulong)(exact >> s) / step;
        var unit = (UInt128)step << s;
        var twice = (exact - ((UInt128)(digits * step) << s)) * 2;
        if (twice > unit || (twice == unit && (digits & 1) == 1)) digits++;
        digits = Math.Clamp(digits, lo, hi);
        return Positional(digits, p - t, destination);
    }

    // digits × 10^-decimals (decimals ≥ 0), written as Python writes numbers in [1e-4, 1e16): "0.00123", "1.0".
    private static int Positional(ulong digits, int decimals, Span<byte> destination)
    {
        Span<byte> text = stackalloc byte[24];
        var n = 0;
        for (var d = digits; d > 0 || n == 0; d /= 10) text[n++] = (byte)('0' + (int)(d % 10));
        var length = 0;
        var integerDigits = n - decimals;
        if (integerDigits <= 0) destination[length++] = (byte)'0';
        for (var i = n - 1; i >= decimals; i--) destination[length++] = text[i];
        destination[length++] = (byte)'.';
        if (decimals == 0)
        {
            destination[length++] = (byte)'0';
            return length;
        }
        for (var i = 0; i < -integerDigits; i++) destination[length++] = (byte)'0';
        for (var i = Math.Min(decimals, n) - 1; i >= 0; i--) destination[length++] = text[i];
        return length;
    }

    // .NET's shortest round-trip of the double, in Python's spelling (lower-case exponent, ".0" on integers).
    private static int General(float value, Span<byte> destination)
    {
        Span<char> chars = stackalloc char[32];
        ((double)value).TryFormat(chars, out var n, "R", CultureInfo.InvariantCulture);
        var hasDot = chars[..n].IndexOfAny('.', 'E') >= 0;
        for (var i = 0; i < n; i++) destination[i] = (byte)char.ToLowerInvariant(chars[i]);
        if (hasDot) return n;
        destination[n] = (byte)'.';
        destination[n + 1] = (byte)'0';
        return n + 2;
    }

    private static UInt128[] PowersOfTen(int count)
    {
        var powers = new UInt128[count];
        powers[0] = 1;
        for (var i = 1; i < count; i++) powers[i] = powers[i - 1] * 10;
        return powers;
    }
}
