namespace ServeSharp.Bench;

/// <summary>One closed-loop measurement on a server's latency-vs-load curve.</summary>
public sealed record LoadPoint(string Server, int Clients, double Throughput, double P50, double P99);

/// <summary>
/// bench/latency-vs-load.png: throughput on x, p50 and p99 latency on y (log scale: the servers' latencies differ by
/// orders of magnitude), one curve per server and percentile, each point labelled with its client count. Drawn with ScottPlot 5 on the SkiaSharp the repository pins (4.x; ScottPlot asks for
/// ≥ 3.119 and draws on 4.x). The SkiaSharp native build we ship has no fontconfig, so a font file is loaded by path.
/// </summary>
public static class LatencyPlot
{
    private static readonly string[] FontFiles =
    [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/lato/Lato-Regular.ttf",
    ];

    private static readonly Lazy<string?> Font = new(() =>
    {
        var file = FontFiles.FirstOrDefault(File.Exists);
        if (file is null) return null; // no font: the curves are still drawn, without text
        ScottPlot.Fonts.AddFontFile("bench", file);
        return "bench";
    });

    public static void Write(string path, string title, IReadOnlyList<LoadPoint> points, int width = 1000, int height = 640)
    {
        var plot = new ScottPlot.Plot();
        if (Font.Value is { } font) plot.Font.Set(font);
        var palette = new ScottPlot.Palettes.Category10();
        var series = 0;
        foreach (var server in points.Select(p => p.Server).Distinct())
        {
            var mine = points.Where(p => p.Server == server).OrderBy(p => p.Clients).ToList();
            var color = palette.GetColor(series++);
            var xs = mine.Select(p => p.Throughput).ToArray();
            var p50 = plot.Add.Scatter(xs, mine.Select(p => Log(p.P50)).ToArray(), color);
            p50.LegendText = $"{server}: p50";
            p50.MarkerSize = 7;
            var p99 = plot.Add.Scatter(xs, mine.Select(p => Log(p.P99)).ToArray(), color);
            p99.LegendText = $"{server}: p99";
            p99.LinePattern = ScottPlot.LinePattern.Dashed;
            p99.MarkerShape = ScottPlot.MarkerShape.OpenSquare;
            p99.MarkerSize = 7;
            foreach (var p in mine)
            {
                var label = plot.Add.Text($"c={p.Clients}", p.Throughput, Log(p.P99));
                label.LabelFontSize = 10;
                label.LabelFontColor = color;
            }
        }
        plot.Title(title);
        plot.XLabel("throughput (req/s)");
        plot.YLabel("latency (ms, log scale)");
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
        {
            MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
            IntegerTicksOnly = true,
            LabelFormatter = y => Math.Pow(10, y).ToString("N0", System.Globalization.CultureInfo.InvariantCulture),
        };
        plot.ShowLegend(ScottPlot.Alignment.UpperCenter);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        plot.SavePng(path, width, height);
    }

    private static double Log(double ms) => Math.Log10(Math.Max(ms, 0.1));
}
