using System.IO.Compression;
using ServeSharp.Handlers.Segmentation;
using ServeSharp.Handlers.Segmentation.Fp16;
using ServeSharp.Sdk;
using ServeSharp.Tests.Segmentation;
using ServeSharp.Tests.Support;
using Xunit.Abstractions;

namespace ServeSharp.Tests.Gpu;

/// <summary>
/// The demo model (model-store/deeplab.mar) on a CUDA worker: served through the class-head path by default, and as fp16,
/// each against the fp32 logits path on the CPU provider on the example scenes. GPU arithmetic is not the CPU's, so the
/// class maps are held to the parity gate (99.5 %) rather than to equality. Skipped, with the reason, without a GPU.
/// </summary>
public sealed class ClassHeadGpuTests(ITestOutputHelper log) : IDisposable
{
    // mode: original keeps each scene at its size, so every request can take the class-head path.
    private const string Yaml = "  mode: original\n";
    private static readonly string[] Scenes = ["scene_0.png", "scene_1.png", "scene_2.png"];
    private readonly TempDir _dir = new();

    [GpuFact]
    public async Task The_demo_model_serves_through_the_class_head_on_CUDA_and_agrees_with_the_cpu_logits_path()
    {
        var onnx = DemoOnnx();
        using var cpu = new SegmenterHarness(onnx, Yaml + "  class_head: false\n");
        using var gpu = new SegmenterHarness(onnx, Yaml, new SystemProperties { DeviceType = "gpu", GpuId = 0, IntraOpThreads = 2 });
        Assert.NotNull(((ImageSegmenter)gpu.Handler).Head);
        await CompareAsync(cpu, gpu, "class head on CUDA");
        Assert.Equal(2 * Scenes.Length, ((ImageSegmenter)gpu.Handler).Head!.Runs);
    }

    [GpuFact]
    public async Task The_demo_model_converted_to_fp16_agrees_with_fp32_on_CUDA()
    {
        var onnx = DemoOnnx();
        var fp16 = _dir.File("deeplab.fp16.onnx");
        await File.WriteAllBytesAsync(fp16, Float16Converter.Convert(await File.ReadAllBytesAsync(onnx)));
        using var cpu = new SegmenterHarness(onnx, Yaml + "  class_head: false\n");
        using var gpu = new SegmenterHarness(fp16, Yaml, new SystemProperties { DeviceType = "gpu", GpuId = 0, IntraOpThreads = 2 });
        await CompareAsync(cpu, gpu, "fp16 on CUDA");
    }

    private async Task CompareAsync(SegmenterHarness cpu, SegmenterHarness gpu, string what)
    {
        long pixels = 0, same = 0;
        for (var round = 0; round < 2; round++)
        {
            foreach (var scene in Scenes)
            {
                var image = await File.ReadAllBytesAsync(Path.Combine(Repo.Root, "examples", scene));
                var (a, _, w, h) = SegmenterHarness.ParseTorchServe(await cpu.RunAsync(image));
                var (b, _, gw, gh) = SegmenterHarness.ParseTorchServe(await gpu.RunAsync(image));
                Assert.Equal((w, h), (gw, gh));
                pixels += a.Length;
                for (var i = 0; i < a.Length; i++) same += a[i] == b[i] ? 1 : 0;
            }
        }
        var agreement = (double)same / pixels;
        log.WriteLine($"{what}: class maps agree with the CPU's fp32 logits path on {agreement:P3} of {pixels} pixels");
        Assert.True(agreement >= 0.995, $"{what}: {agreement:P3} agreement");
    }

    private string DemoOnnx()
    {
        var path = _dir.File("deeplab.onnx");
        using var zip = ZipFile.OpenRead(Path.Combine(Repo.Root, "model-store", "deeplab.mar"));
        zip.GetEntry("deeplab.onnx")!.ExtractToFile(path);
        return path;
    }

    public void Dispose() => _dir.Dispose();
}
