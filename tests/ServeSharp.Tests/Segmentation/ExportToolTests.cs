using System.Text.Json;
using ServeSharp.Archive;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Segmentation;

/// <summary>tools/models/export_segmentation.py: the architectures export with dynamic sizes, checkpoints load, archives come out ready.</summary>
public sealed class ExportToolTests
{
    [Theory]
    [InlineData("lraspp_mobilenet_v3_large", "16")]
    [InlineData("deeplabv3plus_resnet50", "8")]
    [InlineData("fcn_resnet50", "16")]
    public async Task Architectures_export_with_dynamic_sizes_and_serve(string arch, string outputStride)
    {
        using var tmp = new TempDir();
        var onnx = tmp.File(arch + ".onnx");
        Repo.RunPython("models/export_segmentation.py", "--arch", arch, "--num-classes", "5", "--output-stride", outputStride, "--out", onnx);
        using var segmenter = new SegmenterHarness(onnx, "  mode: original\n  output: summary\n");
        foreach (var (w, h) in new[] { (96, 64), (70, 130) })
        {
            var png = Png(w, h);
            var summary = JsonDocument.Parse(SegmenterHarness.Text(await segmenter.RunAsync(png))).RootElement;
            Assert.Equal((w, h), (summary.GetProperty("width").GetInt32(), summary.GetProperty("height").GetInt32()));
            Assert.All(summary.GetProperty("classes").EnumerateArray(), c => Assert.InRange(c.GetProperty("index").GetInt32(), 0, 4));
        }
    }

    [Fact]
    public void A_torchvision_style_checkpoint_loads_unchanged_and_the_tool_writes_a_mar()
    {
        using var tmp = new TempDir();
        // A state dict saved exactly as torchvision's official files are: the model's state_dict(), aux head included.
        var checkpoint = tmp.File("deeplabv3_mobilenet_v3_large_coco.pth");
        var (code, output) = Repo.Run(Repo.Python, ["-c", """
            import sys, torch
            from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large
            torch.manual_seed(1)
            torch.save(deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).state_dict(), sys.argv[1])
            """, checkpoint]);
        Assert.True(code == 0, output);

        var onnx = tmp.File("official.onnx");
        Repo.RunPython("models/export_segmentation.py", "--arch", "deeplabv3_mobilenet_v3_large", "--weights", checkpoint, "--out", onnx,
            "--mar", tmp.Path, "--model-name", "official", "--mode", "torchvision");
        using var archive = ModelArchive.Open(tmp.File("official.mar"), tmp.Sub("x"));
        Assert.Equal("image_segmenter", archive.Model.Handler);
        Assert.Equal("torchvision", archive.Config.Handler.GetString("mode"));
        using var names = JsonDocument.Parse(File.ReadAllText(archive.PathOf("index_to_name.json")));
        Assert.Equal("person", names.RootElement.GetProperty("15").GetString());
    }

    [Fact]
    public void A_checkpoint_that_does_not_match_the_architecture_is_refused()
    {
        using var tmp = new TempDir();
        var checkpoint = tmp.File("wrong.pth");
        Assert.Equal(0, Repo.Run(Repo.Python, ["-c", "import sys, torch; torch.save({'nonsense.weight': torch.zeros(1)}, sys.argv[1])", checkpoint]).ExitCode);
        var (code, output) = Repo.Run(Repo.Python, [Repo.Tool("models/export_segmentation.py"), "--arch", "lraspp_mobilenet_v3_large", "--weights", checkpoint, "--out", tmp.File("x.onnx")]);
        Assert.NotEqual(0, code);
        Assert.Contains("Missing key(s) in state_dict", output);
    }

    private static byte[] Png(int w, int h)
    {
        using var bitmap = new SkiaSharp.SKBitmap(w, h);
        for (var y = 0; y < h; y++)
            for (var x = 0; x < w; x++) bitmap.SetPixel(x, y, new SkiaSharp.SKColor((byte)(x * 3), (byte)(y * 2), (byte)(x + y)));
        using var data = bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }
}
