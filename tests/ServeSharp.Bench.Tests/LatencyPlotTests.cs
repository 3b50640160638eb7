using ServeSharp.Bench;
using SkiaSharp;

namespace ServeSharp.Bench.Tests;

public sealed class LatencyPlotTests
{
    [Fact]
    public void The_plot_is_a_png_of_the_asked_size_with_the_curves_drawn()
    {
        // Shaped like a scaling run on the 2-core machine (bench/RESULTS.md's mobilenet rows).
        LoadPoint[] points =
        [
            new("ServeSharp", 1, 24.7, 39, 64), new("ServeSharp", 2, 28.9, 68, 90), new("ServeSharp", 4, 30.1, 130, 170),
            new("ServeSharp", 8, 30.8, 252, 359), new("ServeSharp", 16, 31.0, 510, 640), new("ServeSharp", 32, 31.2, 1020, 1210),
            new("peer", 1, 7.3, 144, 176), new("peer", 2, 7.6, 262, 300), new("peer", 4, 7.7, 520, 560),
            new("peer", 8, 7.8, 1021, 1090), new("peer", 16, 7.8, 2040, 2150), new("peer", 32, 7.8, 4090, 4300),
        ];
        var folder = Path.Combine(Path.GetTempPath(), $"servesharp-bench-tests-{Guid.NewGuid():N}");
        var path = Path.Combine(folder, "latency-vs-load.png");

        byte[] bytes;
        try
        {
            LatencyPlot.Write(path, "mobilenet 224: latency vs load", points, width: 900, height: 600);
            bytes = File.ReadAllBytes(path);
            if (Environment.GetEnvironmentVariable("SERVESHARP_BENCH_TESTS_KEEP_PLOT") is { Length: > 0 } keep) File.Copy(path, keep, overwrite: true);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }

        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, bytes[..8]);
        Assert.True(bytes.Length > 10_000, $"{bytes.Length} bytes");
        using var image = SKBitmap.Decode(bytes);
        Assert.Equal(900, image.Width);
        Assert.Equal(600, image.Height);
        // Two servers' colours (Category10's first two: blue 1f77b4, orange ff7f0e) are on the canvas.
        Assert.True(Count(image, new SKColor(0x1f, 0x77, 0xb4)) > 200, "ServeSharp's curves");
        Assert.True(Count(image, new SKColor(0xff, 0x7f, 0x0e)) > 200, "the peer's curves");
    }

    private static int Count(SKBitmap image, SKColor color)
    {
        var n = 0;
        for (var y = 0; y < image.Height; y++)
            for (var x = 0; x < image.Width; x++)
            {
                var c = image.GetPixel(x, y);
                if (Math.Abs(c.Red - color.Red) < 24 && Math.Abs(c.Green - color.Green) < 24 && Math.Abs(c.Blue - color.Blue) < 24) n++;
            }
        return n;
    }
}
