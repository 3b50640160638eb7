using ServeSharp.Handlers.Segmentation;
using SkiaSharp;

namespace ServeSharp.Tests.Segmentation;

/// <summary>
/// jpeg_draft: true: a JPEG much larger than the model's input is decoded at a reduced DCT scale. The gate is the
/// segmentation parity gate: at least 99.5 % of the class map agrees with the answer from every pixel decoded (the
/// default). The large photographs are the parity photographs enlarged 8× and encoded as JPEG (no real multi-megapixel
/// photograph is available offline).
/// </summary>
[Collection("parity")]
public sealed class JpegDraftTests(ParityModels models)
{
    [Fact]
    public void A_large_jpeg_is_decoded_at_the_smallest_scale_that_keeps_twice_the_resize_and_reports_its_own_size()
    {
        var jpeg = Enlarged("coffee.png", 8, SKEncodedOrigin.TopLeft); // 4800×3200
        var options = new SegmenterOptions { JpegDraft = true }; // torchserve: shorter side to 256, so 1536×1024 is kept
        var image = ImageDecoder.Decode(jpeg, long.MaxValue, (w, h) => Preprocessor.DraftSize(w, h, options), out var width, out var height);
        Assert.Equal((4800, 3200), (width, height));
        Assert.Equal((2400, 1600), (image.Width, image.Height)); // 1/2: 1/4 (1200×800) would be under 1536×1024

        var all = ImageDecoder.Decode(jpeg, long.MaxValue, (w, h) => Preprocessor.DraftSize(w, h, new SegmenterOptions()), out _, out _);
        Assert.Equal((4800, 3200), (all.Width, all.Height)); // off by default
        var overlay = ImageDecoder.Decode(jpeg, long.MaxValue, (w, h) => Preprocessor.DraftSize(w, h, options with { Output = "overlay" }), out _, out _);
        Assert.Equal((4800, 3200), (overlay.Width, overlay.Height)); // drawn over the image: every pixel is needed
        var smaller = ImageDecoder.Decode(Enlarged("coffee.png", 4, SKEncodedOrigin.TopLeft), long.MaxValue, (w, h) => Preprocessor.DraftSize(w, h, options), out _, out _);
        Assert.Equal((2400, 1600), (smaller.Width, smaller.Height)); // its 1/2 is under four times 384×256: decoded whole
    }

    [Theory]
    [InlineData("mode: torchserve\n", "")]
    [InlineData("mode: torchvision\n  resize_size: 256\n", "?output=mask")]
    public async Task Drafted_answers_stay_inside_the_parity_gate(string handler, string query)
    {
        using var drafted = new SegmenterHarness(models.DeepLabV3Plus.Onnx, "  " + handler + "  jpeg_draft: true\n");
        using var whole = new SegmenterHarness(models.DeepLabV3Plus.Onnx, "  " + handler);
        var worst = 1.0;
        foreach (var photo in ParityModels.PngPhotos)
        {
            var jpeg = Enlarged(photo, 8, SKEncodedOrigin.TopLeft);
            var a = Classes(await drafted.RunAsync(jpeg, query.TrimStart('?')), query);
            var b = Classes(await whole.RunAsync(jpeg, query.TrimStart('?')), query);
            Assert.Equal(a.Length, b.Length);
            var same = 0;
            for (var i = 0; i < a.Length; i++) same += a[i] == b[i] ? 1 : 0;
            worst = Math.Min(worst, (double)same / a.Length);
        }
        Assert.True(worst >= 0.995, $"class agreement with every pixel decoded: {worst:P2} on the worst photograph");
    }

    [Fact]
    public void An_exif_rotated_jpeg_is_drafted_in_its_own_orientation()
    {
        var jpeg = Enlarged("coffee.png", 8, SKEncodedOrigin.RightTop); // stored 4800×3200, shown 3200×4800
        var options = new SegmenterOptions { JpegDraft = true };
        var image = ImageDecoder.Decode(jpeg, long.MaxValue, (w, h) => Preprocessor.DraftSize(w, h, options), out var width, out var height);
        Assert.Equal((3200, 4800), (width, height));
        Assert.Equal((1600, 2400), (image.Width, image.Height));
    }

    private static byte[] Classes(ServeSharp.Sdk.HandlerOutput output, string query)
    {
        if (query.Length == 0) return SegmenterHarness.ParseTorchServe(output).Classes;
        using var bitmap = SKBitmap.Decode(output.Body.ToArray());
        return bitmap.GetPixelSpan().ToArray();
    }

    // The photograph enlarged `factor` times (bicubic), as a JPEG of quality 90, with the EXIF orientation given.
    private byte[] Enlarged(string photo, int factor, SKEncodedOrigin origin)
    {
        using var source = SKBitmap.Decode(models.Photo(photo));
        using var large = source.Resize(new SKImageInfo(source.Width * factor, source.Height * factor), new SKSamplingOptions(SKCubicResampler.CatmullRom));
        using var data = large.Encode(SKEncodedImageFormat.Jpeg, 90);
        var jpeg = data.ToArray();
        return origin == SKEncodedOrigin.TopLeft ? jpeg : WithOrientation(jpeg, origin);
    }

    // An APP1 Exif segment holding only the orientation tag, inserted after SOI.
    private static byte[] WithOrientation(byte[] jpeg, SKEncodedOrigin origin)
    {
        byte[] tiff = [(byte)'M', (byte)'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (byte)origin, 0, 0, 0, 0, 0, 0];
        byte[] header = [(byte)'E', (byte)'x', (byte)'i', (byte)'f', 0, 0];
        var length = 2 + header.Length + tiff.Length;
        return [0xFF, 0xD8, 0xFF, 0xE1, (byte)(length >> 8), (byte)length, .. header, .. tiff, .. jpeg.AsSpan(2)];
    }
}

/// <summary>overlap_postprocess: true: image_segmenter finishes its batches off the worker's thread, with the same answers.</summary>
[Collection("parity")]
public sealed class OverlapPostprocessSegmenterTests(ParityModels models)
{
    [Fact]
    public async Task Answers_are_byte_for_byte_those_of_the_default_path()
    {
        using var overlapped = new SegmenterHarness(models.DeepLabV3Plus.Onnx, "  mode: torchserve\n  overlap_postprocess: true\n");
        using var plain = new SegmenterHarness(models.DeepLabV3Plus.Onnx);
        var photos = ParityModels.PngPhotos.Select(p => (File.ReadAllBytes(models.Photo(p)), "")).ToArray();
        var a = await overlapped.RunAsync(photos);
        var b = await plain.RunAsync(photos);
        for (var i = 0; i < photos.Length; i++) Assert.True(a[i].Body.Span.SequenceEqual(b[i].Body.Span), $"photo {i} differs");
        var mask = await overlapped.RunAsync(photos[0].Item1, "output=mask");
        var plainMask = await plain.RunAsync(photos[0].Item1, "output=mask");
        Assert.True(mask.Body.Span.SequenceEqual(plainMask.Body.Span));
    }
}
