using System.Globalization;

namespace ServeSharp.Bench;

/// <summary>
/// What the bare model does on this machine outside any server: <see cref="Images"/> images (runs × batch size) in
/// <see cref="Seconds"/> of wall time, over <see cref="Workers"/> concurrent callers.
/// </summary>
public sealed record BareRate(int Workers, int BatchSize, int Runs, double Seconds)
{
    public int Images => Runs * BatchSize;

    /// <summary>Images per second; a batch of 8 counts 8, as 8 requests do on the server.</summary>
    public double InferencesPerSecond => Seconds > 0 ? Images / Seconds : 0;
}

/// <summary>
/// Serving efficiency: served requests per second ÷ the bare model's inferences per second on the same ONNX file, batch
/// size and threads. 100 % means the server costs nothing beyond ONNX Runtime; what is missing is decode, preprocess,
/// postprocess, HTTP and queueing that do not overlap with inference.
/// </summary>
public static class Efficiency
{
    /// <summary>The ratio, or null when either side is missing or zero (a scenario that failed, a bare run not made).</summary>
    public static double? Of(double servedPerSecond, BareRate? bare) =>
        bare is null || bare.InferencesPerSecond <= 0 || servedPerSecond <= 0 ? null : servedPerSecond / bare.InferencesPerSecond;

    /// <summary>"83 %" for a table cell; empty when there is no ratio.</summary>
    public static string Cell(double? efficiency) =>
        efficiency is { } e ? string.Create(CultureInfo.InvariantCulture, $"{e * 100:F0} %") : "";

    /// <summary>A line saying whether a goal (reported, never asserted) was met.</summary>
    public static string Goal(string scenario, double? efficiency, double goal) => efficiency switch
    {
        null => $"{scenario}: efficiency not measured (goal ≥ {goal:P0})",
        { } e => string.Create(CultureInfo.InvariantCulture, $"{scenario}: efficiency {e:P1}, goal ≥ {goal:P0}: {(e >= goal ? "met" : "not met")}"),
    };
}
