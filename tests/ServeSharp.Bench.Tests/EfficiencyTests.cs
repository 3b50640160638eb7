using System.IO.Compression;
using ServeSharp.Bench;

namespace ServeSharp.Bench.Tests;

public sealed class EfficiencyTests(DemoModel demo) : IClassFixture<DemoModel>
{
    // Served figures from bench/RESULTS.md (2026-11-24, mobilenet 224 TorchServe JSON) against bare rates of the same size.
    [Theory]
    [InlineData(24.73, 1, 1, 400, 8.0, 0.4946)] // 50 inferences/s bare
    [InlineData(30.24, 1, 8, 50, 10.0, 0.756)] // a batch of 8 counts 8 images: 40 inferences/s bare
    [InlineData(30.84, 2, 1, 300, 8.0, 0.8224)] // two workers' runs added up: 37.5 inferences/s bare
    public void Efficiency_is_served_requests_over_bare_images_per_second(double served, int workers, int batch, int runs, double seconds, double expected)
    {
        var bare = new BareRate(workers, batch, runs, seconds);

        Assert.Equal(runs * batch, bare.Images);
        Assert.Equal(expected, Efficiency.Of(served, bare)!.Value, 4);
    }

    [Fact]
    public void No_ratio_without_both_sides()
    {
        Assert.Null(Efficiency.Of(24.73, null));
        Assert.Null(Efficiency.Of(24.73, new BareRate(1, 1, 0, 0)));
        Assert.Null(Efficiency.Of(0, new BareRate(1, 1, 10, 1)));
        Assert.Equal("", Efficiency.Cell(null));
        Assert.Equal("83 %", Efficiency.Cell(0.8251));
    }

    [Fact]
    public void Goals_are_reported_as_met_or_not()
    {
        Assert.EndsWith("goal ≥ 80 %: met", Efficiency.Goal("224", 0.8, 0.8), StringComparison.Ordinal);
        Assert.EndsWith("goal ≥ 90 %: not met", Efficiency.Goal("520", 0.899, 0.9), StringComparison.Ordinal);
        Assert.Contains("not measured", Efficiency.Goal("520", null, 0.9), StringComparison.Ordinal);
    }

    // The bare model through ONNX Runtime for real: the demo archive's DeepLabV3+ (model-store/deeplab.mar), small inputs.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Bare_model_counts_every_worker_and_every_image_of_a_batch(bool shared)
    {
        var onnx = demo.Onnx;
        var spec = new BareSpec(onnx, [[3, 64, 64], [3, 64, 96]], BatchSize: 2, Workers: 2, Threads: 1, Shared: shared);

        var rate = BareModel.Measure(spec, minRunsPerWorker: 3, minTime: TimeSpan.Zero);

        Assert.Equal(2, rate.Workers);
        Assert.True(rate.Runs >= 6, $"{rate.Runs} runs");
        Assert.Equal(rate.Runs * 2, rate.Images);
        Assert.True(rate.InferencesPerSecond > 0);
        var efficiency = Efficiency.Of(rate.InferencesPerSecond / 2, rate);
        Assert.Equal(0.5, efficiency!.Value, 9);
    }

    [Fact]
    public void Torchvision_shapes_follow_resize_int_on_real_jpegs()
    {
        // Shorter side to 520, longer int(520·long/short), as torchvision's Resize(520) and PilResize do.
        var shapes = InputShapes.Torchvision([Jpeg(451, 300), Jpeg(512, 512), Jpeg(300, 640)], 520);

        Assert.Equal([3, 520, 781], shapes[0]);
        Assert.Equal([3, 520, 520], shapes[1]);
        Assert.Equal([3, 1109, 520], shapes[2]);
    }

    private static byte[] Jpeg(int width, int height)
    {
        using var bitmap = new SkiaSharp.SKBitmap(width, height);
        bitmap.Erase(new SkiaSharp.SKColor(120, 80, 40));
        using var data = bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Jpeg, 90);
        return data.ToArray();
    }

}

/// <summary>The demo archive's ONNX file (model-store/deeplab.mar), extracted once for the class and removed after.</summary>
public sealed class DemoModel : IDisposable
{
    public DemoModel()
    {
        Onnx = Path.Combine(Path.GetTempPath(), $"servesharp-bench-tests-{Environment.ProcessId}-{Guid.NewGuid():N}.onnx");
        using var archive = ZipFile.OpenRead(Path.Combine(Repository.Root, "model-store", "deeplab.mar"));
        archive.GetEntry("deeplab.onnx")!.ExtractToFile(Onnx);
    }

    public string Onnx { get; }

    public void Dispose() => File.Delete(Onnx);
}

internal static class Repository
{
    public static string Root { get; } = Find();

    private static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "ServeSharp.sln"))) return dir.FullName;
        throw new InvalidOperationException("the tests run inside the repository");
    }
}
