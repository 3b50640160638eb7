using ServeSharp.Tests.Support;
using Xunit.Abstractions;

namespace ServeSharp.Tests.Segmentation;

/// <summary>
/// image_segmenter against PyTorch/torchvision on the same weights and real photographs: class agreement ≥ 99.5 %
/// and the 99th percentile of |Δprob| ≤ 2e-3, for TorchServe's mode, torchvision's preset, TTA and sliding windows.
/// </summary>
[Collection("parity")]
public sealed class ParityTests(ParityModels models, ITestOutputHelper log)
{
    [Fact]
    public async Task Torchserve_mode_matches_torchserves_image_segmenter_steps()
    {
        var (onnx, state) = models.DeepLabV3Plus;
        using var segmenter = new SegmenterHarness(onnx);
        var reference = models.Reference(state, ParityModels.PngPhotos, "--mode", "torchserve");
        foreach (var photo in ParityModels.PngPhotos)
        {
            var ours = SegmenterHarness.ParseTorchServe(await segmenter.RunAsync(await File.ReadAllBytesAsync(models.Photo(photo))));
            AssertClose(photo, reference[photo], ours);
        }
    }

    [Fact]
    public async Task Torchvision_mode_matches_the_eval_preset_at_the_image_size()
    {
        var (onnx, state) = models.DeepLabV3Plus;
        using var segmenter = new SegmenterHarness(onnx, "  mode: torchvision\n  resize_size: 320\n");
        string[] photos = ["astronaut.png", "rocket.png"];
        var reference = models.Reference(state, photos, "--mode", "torchvision", "--resize-size", "320");
        foreach (var photo in photos)
        {
            var ours = SegmenterHarness.ParseTorchServe(await segmenter.RunAsync(await File.ReadAllBytesAsync(models.Photo(photo))));
            AssertClose(photo, reference[photo], ours);
        }
    }

    [Theory]
    [InlineData("deeplabv3plus")]
    [InlineData("deeplabv3_mobilenet")]
    public async Task Multi_scale_and_flip_tta_matches_a_torch_implementation(string which)
    {
        var (onnx, state) = which == "deeplabv3plus" ? models.DeepLabV3Plus : models.DeepLabV3MobileNet;
        using var segmenter = new SegmenterHarness(onnx, "  mode: torchvision\n  resize_size: 256\n");
        string[] photos = ["chelsea.png", "coffee.png"];
        var reference = models.Reference(state, photos, "--mode", "torchvision", "--resize-size", "256", "--scales", "0.75,1.0,1.25", "--flip");
        foreach (var photo in photos)
        {
            var ours = SegmenterHarness.ParseTorchServe(await segmenter.RunAsync(await File.ReadAllBytesAsync(models.Photo(photo)), "scales=0.75,1.0,1.25&flip=true"));
            AssertClose(photo, reference[photo], ours);
        }
    }

    [Theory]
    [InlineData("deeplabv3plus")]
    [InlineData("deeplabv3_mobilenet")]
    public async Task Sliding_windows_match_a_torch_implementation(string which)
    {
        var (onnx, state) = which == "deeplabv3plus" ? models.DeepLabV3Plus : models.DeepLabV3MobileNet;
        using var segmenter = new SegmenterHarness(onnx, "  mode: original\n");
        string[] photos = ["astronaut.png", "rocket.png"];
        var reference = models.Reference(state, photos, "--mode", "original", "--crop-size", "256", "256", "--stride", "171", "171");
        foreach (var photo in photos)
        {
            var ours = SegmenterHarness.ParseTorchServe(await segmenter.RunAsync(await File.ReadAllBytesAsync(models.Photo(photo)), "crop_size=256,256&stride=171,171"));
            AssertClose(photo, reference[photo], ours);
        }
    }

    private void AssertClose(string photo, (byte[] Classes, float[] Probs, int Width, int Height) expected, (byte[] Classes, float[] Probs, int Width, int Height) actual)
    {
        Assert.Equal((expected.Width, expected.Height), (actual.Width, actual.Height));
        var same = 0;
        var deltas = new float[expected.Probs.Length];
        for (var i = 0; i < deltas.Length; i++)
        {
            if (expected.Classes[i] == actual.Classes[i]) same++;
            deltas[i] = Math.Abs(expected.Probs[i] - actual.Probs[i]);
        }
        Array.Sort(deltas);
        var agreement = (double)same / deltas.Length;
        var p99 = deltas[(int)(0.99 * (deltas.Length - 1))];
        var classes = expected.Classes.Distinct().Count();
        log.WriteLine($"{photo}: class agreement {agreement:P3}, p99 |Δprob| {p99:E2}, max {deltas[^1]:E2}, {classes} classes present");
        Assert.True(classes >= 2, $"{photo}: the reference predicts a single class; the parity check would be vacuous");
        Assert.True(agreement >= 0.995, $"{photo}: class agreement {agreement:P3} < 99.5 %");
        Assert.True(p99 <= 2e-3, $"{photo}: p99 |Δprob| {p99:E2} > 2e-3");
    }
}

[CollectionDefinition("parity")]
public sealed class ParityCollection : ICollectionFixture<ParityModels>;
