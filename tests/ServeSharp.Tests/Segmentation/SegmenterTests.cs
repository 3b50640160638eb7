using System.Text;
using System.Text.Json;
using ServeSharp.Handlers.Segmentation;
using ServeSharp.Sdk;
using ServeSharp.Tests.Support;
using SkiaSharp;

namespace ServeSharp.Tests.Segmentation;

/// <summary>image_segmenter's inputs, outputs, batching and refusals, on real photographs and real ONNX models.</summary>
[Collection("parity")]
public sealed class SegmenterTests(ParityModels models)
{
    [Fact]
    public async Task A_batch_of_mixed_sizes_answers_each_image_as_one_by_one()
    {
        using var segmenter = new SegmenterHarness(models.DeepLabV3Plus.Onnx, "  mode: torchvision\n  resize_size: 200\n  output: mask\n");
        var images = new[] { "astronaut.png", "chelsea.png", "coffee.png", "astronaut.png" }.Select(p => File.ReadAllBytes(models.Photo(p))).ToArray();
        var batched = await segmenter.RunAsync(images.Select(i => (i, "")).ToArray());
        for (var i = 0; i < images.Length; i++)
        {
            var single = await segmenter.RunAsync(images[i]);
            Assert.Equal("image/png", batched[i].ContentType);
            Assert.True(single.Body.Span.SequenceEqual(batched[i].Body.Span), $"image {i} differs between batched and single inference");
        }
    }

    [Fact]
    public async Task Png_outputs_decode_back_to_the_predicted_map_and_the_summary_adds_up()
    {
        var names = new TempDir();
        var namesFile = names.File("index_to_name.json");
        File.WriteAllText(namesFile, """{"0": "background", "1": "red", "2": "yellow"}""");
        using var segmenter = new SegmenterHarness(models.DeepLabV3Plus.Onnx, "  mode: torchvision\n  resize_size: 256\n", namesFile);
        var photo = await File.ReadAllBytesAsync(models.Photo("chelsea.png"));

        var (classes, _, w, h) = SegmenterHarness.ParseTorchServe(await segmenter.RunAsync(photo));
        Assert.Equal((451, 300), (w, h));

        var mask = await segmenter.RunAsync(photo, "output=mask");
        using (var decoded = SKBitmap.Decode(mask.Body.ToArray()))
        {
            Assert.Equal((w, h), (decoded.Width, decoded.Height));
            for (var i = 0; i < classes.Length; i++) Assert.Equal(classes[i], decoded.GetPixel(i % w, i / w).Red);
        }

        var color = await segmenter.RunAsync(photo, "output=color");
        using (var decoded = SKBitmap.Decode(color.Body.ToArray()))
        {
            for (var i = 0; i < classes.Length; i += 97)
            {
                var (r, g, b) = Palette.Voc[classes[i]];
                var px = decoded.GetPixel(i % w, i / w);
                Assert.Equal((r, g, b), (px.Red, px.Green, px.Blue));
            }
        }

        var overlay = await segmenter.RunAsync(photo, "output=overlay&alpha=0.6");
        using (var decoded = SKBitmap.Decode(overlay.Body.ToArray())) Assert.Equal((w, h), (decoded.Width, decoded.Height));

        var summary = JsonDocument.Parse(SegmenterHarness.Text(await segmenter.RunAsync(photo, "output=summary&rle=true"))).RootElement;
        Assert.Equal(w * h, summary.GetProperty("pixels").GetInt32());
        var perClass = summary.GetProperty("classes").EnumerateArray().ToList();
        Assert.Equal(w * h, perClass.Sum(c => c.GetProperty("pixels").GetInt32()));
        Assert.Equal(1.0, perClass.Sum(c => c.GetProperty("fraction").GetDouble()), 6);
        foreach (var c in perClass)
        {
            var index = c.GetProperty("index").GetInt32();
            Assert.Equal(classes.Count(v => v == index), c.GetProperty("pixels").GetInt32());
            Assert.Equal(index switch { 0 => "background", 1 => "red", 2 => "yellow", _ => $"class_{index}" }, c.GetProperty("name").GetString());
            // The colour the colour mask paints the class with, so a legend needs no copy of the palette.
            var (r, g, b) = Palette.Voc[(byte)index];
            Assert.Equal([r, g, b], c.GetProperty("color").EnumerateArray().Select(v => (byte)v.GetInt32()));
            var regions = c.GetProperty("regions").EnumerateArray().ToList();
            if (c.GetProperty("region_count").GetInt32() == regions.Count)
                Assert.Equal(c.GetProperty("pixels").GetInt32(), regions.Sum(r => r.GetProperty("area").GetInt32()));
            var rle = c.GetProperty("rle");
            Assert.Equal(w * h, rle.GetProperty("counts").EnumerateArray().Sum(v => v.GetInt32()));
        }
        names.Dispose();
    }

    [Fact]
    public async Task Bad_images_fail_alone_with_a_4xx_and_a_message()
    {
        using var segmenter = new SegmenterHarness(TestModels.Tiny, "  mode: torchvision\n  resize_size: 64\n  max_pixels: 200000\n");
        var good = await File.ReadAllBytesAsync(models.Photo("chelsea.png"));
        var big = await File.ReadAllBytesAsync(models.Photo("rocket.png")); // 640×427 > 200000 pixels
        var outputs = await segmenter.RunAsync((good, ""), ([], ""), ("not an image"u8.ToArray(), ""), (big, ""), (good, "output=bogus"), (good, "mode=fixed"));
        Assert.Null(outputs[0].StatusCode);
        Assert.Equal(400, outputs[1].StatusCode);
        Assert.Contains("the image is empty", SegmenterHarness.Text(outputs[1]));
        Assert.Equal(400, outputs[2].StatusCode);
        Assert.Contains("not a decodable image", SegmenterHarness.Text(outputs[2]));
        Assert.Equal(413, outputs[3].StatusCode);
        Assert.Contains("over the limit of 200000", SegmenterHarness.Text(outputs[3]));
        Assert.Equal(400, outputs[4].StatusCode);
        Assert.Contains("output 'bogus' is not one of", SegmenterHarness.Text(outputs[4]));
        Assert.Equal(400, outputs[5].StatusCode);
        Assert.Contains("mode 'fixed' needs size", SegmenterHarness.Text(outputs[5]));
    }

    [Fact]
    public async Task Base64_json_and_raw_bytes_give_the_same_answer()
    {
        using var segmenter = new SegmenterHarness(TestModels.Tiny);
        var photo = await File.ReadAllBytesAsync(models.Photo("coffee.png"));
        var raw = await segmenter.RunAsync(photo);
        var json = Encoding.UTF8.GetBytes($$"""{"data": "{{Convert.ToBase64String(photo)}}"}""");
        var wrapped = await segmenter.RunAsync(json);
        Assert.True(raw.Body.Span.SequenceEqual(wrapped.Body.Span));
    }

    [Fact]
    public async Task Argmax_models_serve_maps_and_refuse_tta()
    {
        using var segmenter = new SegmenterHarness(TestModels.TinyArgmax, "  mode: torchvision\n  resize_size: 64\n");
        var photo = await File.ReadAllBytesAsync(models.Photo("chelsea.png"));
        var json = JsonDocument.Parse(SegmenterHarness.Text(await segmenter.RunAsync(photo))).RootElement;
        Assert.Equal(300, json.GetArrayLength());
        Assert.Equal(JsonValueKind.Number, json[0][0].ValueKind);
        var mask = await segmenter.RunAsync(photo, "output=mask");
        Assert.Equal("image/png", mask.ContentType);
        var tta = await segmenter.RunAsync(photo, "scales=0.5,1.0");
        Assert.Equal(400, tta.StatusCode);
        Assert.Contains("needs a model that outputs logits", SegmenterHarness.Text(tta));
    }

    [Fact]
    public void A_model_that_does_not_fit_fails_at_load_with_its_shapes()
    {
        var error = Assert.Throws<HandlerLoadException>(() => new SegmenterHarness(TestModels.Flat));
        Assert.Contains("flat.onnx: input 'input' is Float [-1, 3]; image_segmenter needs a float N×3×H×W input", error.Message);
    }

    [Fact]
    public async Task Exif_orientation_is_applied()
    {
        using var tmp = new TempDir();
        var rotated = tmp.File("rotated.jpg");
        var (code, output) = Repo.Run(Repo.Python, ["-c", """
            import sys
            from PIL import Image
            img = Image.new("RGB", (64, 32), (200, 30, 30))
            exif = Image.Exif()
            exif[0x0112] = 6  # rotate 90° clockwise to display
            img.save(sys.argv[1], exif=exif.tobytes())
            """, rotated]);
        Assert.True(code == 0, output);
        using var segmenter = new SegmenterHarness(TestModels.Tiny, "  mode: original\n  output: summary\n");
        var summary = JsonDocument.Parse(SegmenterHarness.Text(await segmenter.RunAsync(await File.ReadAllBytesAsync(rotated)))).RootElement;
        Assert.Equal((32, 64), (summary.GetProperty("width").GetInt32(), summary.GetProperty("height").GetInt32()));
    }

    [Fact]
    public void Pil_resize_is_bit_exact_with_pillow()
    {
        using var tmp = new TempDir();
        var photo = models.Photo("rocket.png");
        foreach (var (w, h) in new[] { (256, 170), (333, 500), (1000, 90), (640, 427) })
        {
            var expected = tmp.File($"pil_{w}x{h}.raw");
            var (code, output) = Repo.Run(Repo.Python, ["-c", "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').resize((int(sys.argv[2]), int(sys.argv[3])), Image.BILINEAR).tobytes('raw', 'RGB') and open(sys.argv[4], 'wb').write(Image.open(sys.argv[1]).convert('RGB').resize((int(sys.argv[2]), int(sys.argv[3])), Image.BILINEAR).tobytes())", photo, $"{w}", $"{h}", expected]);
            Assert.True(code == 0, output);
            var image = ImageDecoder.Decode(File.ReadAllBytes(photo), long.MaxValue);
            var ours = PilResize.Resize(image, w, h);
            Assert.Equal(File.ReadAllBytes(expected), ours.Pixels);
        }
    }

    [Theory]
    [InlineData("PNG")]
    [InlineData("JPEG")]
    [InlineData("WEBP")]
    [InlineData("BMP")]
    [InlineData("GIF")]
    public async Task Every_supported_format_decodes(string format)
    {
        using var tmp = new TempDir();
        var file = tmp.File("photo." + format.ToLowerInvariant());
        var (code, output) = Repo.Run(Repo.Python, ["-c", "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2], sys.argv[3])", models.Photo("chelsea.png"), file, format]);
        Assert.True(code == 0, output);
        using var segmenter = new SegmenterHarness(TestModels.Tiny, "  mode: original\n  output: summary\n");
        var summary = JsonDocument.Parse(SegmenterHarness.Text(await segmenter.RunAsync(await File.ReadAllBytesAsync(file)))).RootElement;
        Assert.Equal((451, 300), (summary.GetProperty("width").GetInt32(), summary.GetProperty("height").GetInt32()));
    }

    [Fact]
    public async Task Accept_image_png_answers_a_colour_mask()
    {
        var request = InferenceRequest.FromBody(await File.ReadAllBytesAsync(models.Photo("coffee.png")));
        var withAccept = new InferenceRequest("r", request.Parameters, new Dictionary<string, string> { ["Accept"] = "image/png" });
        using var segmenter = new SegmenterHarness(TestModels.Tiny, "  mode: torchvision\n  resize_size: 64\n");
        var output = (await segmenter.RunRequestsAsync(withAccept))[0];
        Assert.Equal("image/png", output.ContentType);
        using var decoded = SKBitmap.Decode(output.Body.ToArray());
        Assert.Equal((600, 400), (decoded.Width, decoded.Height));
    }

    [Fact]
    public async Task A_4000_by_3000_image_is_segmented_at_full_resolution_with_sliding_windows()
    {
        using var bitmap = new SKBitmap(4000, 3000);
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(new SKColor(20, 20, 20));
            using var paint = new SKPaint { Color = new SKColor(250, 10, 10) };
            canvas.DrawRect(1000, 500, 500, 700, paint); // x, y, width, height
        }
        using var png = bitmap.Encode(SKEncodedImageFormat.Png, 1);
        using var segmenter = new SegmenterHarness(TestModels.Tiny, "  mode: original\n  output: summary\n");
        var summary = JsonDocument.Parse(SegmenterHarness.Text(await segmenter.RunAsync(png.ToArray(), "crop_size=512,512&stride=384,384"))).RootElement;
        Assert.Equal((4000, 3000), (summary.GetProperty("width").GetInt32(), summary.GetProperty("height").GetInt32()));
        // The red rectangle is class 0 (the red logit wins) and is one region with its exact bounding box.
        var red = summary.GetProperty("classes").EnumerateArray().First(c => c.GetProperty("index").GetInt32() == 0);
        Assert.Equal(500 * 700, red.GetProperty("pixels").GetInt32());
        Assert.Equal([1000, 500, 500, 700], red.GetProperty("regions")[0].GetProperty("bbox").EnumerateArray().Select(v => v.GetInt32()));
    }
}
