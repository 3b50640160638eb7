using System.Numerics.Tensors;
using ServeSharp.Handlers.Segmentation;

namespace ServeSharp.Tests.Segmentation;

/// <summary>
/// The per-request shortcuts give exactly the answers of the plain computations they replace: the crop-only resize,
/// the normalisation table, and the blocked argmax/softmax.
/// </summary>
public sealed class HotPathTests
{
    [Theory]
    [InlineData(640, 427, 384, 256, 80, 16, 224, 224)] // TorchServe's Resize(256) + CenterCrop(224), landscape
    [InlineData(427, 640, 256, 383, 16, 80, 224, 224)] // portrait
    [InlineData(300, 200, 300, 256, 38, 16, 224, 224)] // height only
    [InlineData(200, 300, 256, 300, 16, 38, 224, 224)] // width only
    [InlineData(512, 512, 256, 256, 0, 0, 256, 256)] // the whole image
    [InlineData(97, 61, 300, 170, 299, 169, 1, 1)] // an upscale, the last pixel
    [InlineData(120, 80, 120, 80, 10, 20, 50, 40)] // no resize, a crop
    public void The_crop_only_resize_is_the_crop_of_the_whole_resize(int w, int h, int rw, int rh, int x, int y, int cw, int ch)
    {
        var image = Noise(w, h, seed: w * 31 + h);
        var whole = PilResize.Resize(image, rw, rh).Crop(x, y, cw, ch);
        var window = PilResize.ResizeCrop(image, rw, rh, x, y, cw, ch);
        Assert.Equal((cw, ch), (window.Width, window.Height));
        Assert.Equal(whole.Pixels, window.Pixels);
    }

    [Fact]
    public void The_normalisation_table_gives_torchvisions_float32_values_exactly()
    {
        var image = Noise(64, 48, seed: 1);
        float[] mean = [0.485f, 0.456f, 0.406f], std = [0.229f, 0.224f, 0.225f];
        var chw = new float[3 * 64 * 48];
        TensorOps.Normalize(image, mean, std, chw);
        for (var c = 0; c < 3; c++)
        {
            for (var i = 0; i < 64 * 48; i++)
                Assert.Equal((image.Pixels[i * 3 + c] / 255f - mean[c]) / std[c], chw[c * 64 * 48 + i]);
        }
    }

    [Theory]
    [InlineData(1007)]
    [InlineData(3 * 1024 + 40)] // a short tail joins the block before it
    [InlineData(224 * 224)]
    public void Blocked_argmax_and_softmax_equal_the_whole_plane_computation_bit_for_bit(int pixels)
    {
        const int classes = 21;
        var random = new Random(pixels);
        var planes = new float[classes * pixels];
        for (var i = 0; i < planes.Length; i++) planes[i] = (float)(random.NextDouble() * 16 - 8);
        var best = new byte[pixels];
        var probs = new float[pixels];
        Argmax.Planes(planes, classes, pixels, probabilities: false, best, probs);

        // The whole-plane computation: the same operations, each over all pixels at once.
        var max = planes[..pixels];
        var index = new byte[pixels];
        for (var k = 1; k < classes; k++)
        {
            for (var i = 0; i < pixels; i++)
            {
                if (planes[k * pixels + i] > max[i]) (max[i], index[i]) = (planes[k * pixels + i], (byte)k);
            }
        }
        var sum = new float[pixels];
        var term = new float[pixels];
        for (var k = 0; k < classes; k++)
        {
            TensorPrimitives.Subtract(planes.AsSpan(k * pixels, pixels), max, term);
            TensorPrimitives.Exp(term, term);
            TensorPrimitives.Add(sum, term, sum);
        }
        TensorPrimitives.Reciprocal(sum, sum);
        Assert.Equal(index, best);
        Assert.Equal(sum, probs);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void Split_over_threads_the_argmax_and_the_json_are_those_of_one_thread(int parallelism)
    {
        const int classes = 21, w = 224, h = 224;
        var random = new Random(parallelism);
        var planes = new float[classes * w * h];
        for (var i = 0; i < planes.Length; i++) planes[i] = (float)(random.NextDouble() * 16 - 8);
        var (best1, probs1) = (new byte[w * h], new float[w * h]);
        var (bestN, probsN) = (new byte[w * h], new float[w * h]);
        Argmax.Planes(planes, classes, w * h, probabilities: false, best1, probs1);
        Argmax.Planes(planes.AsMemory(), classes, w * h, probabilities: false, bestN, probsN, parallelism);
        Assert.Equal(best1, bestN);
        Assert.Equal(probs1, probsN);

        var map = new ClassMap(best1, probs1, w, h);
        var one = OutputWriter.TorchServeJson(map, 1);
        var split = OutputWriter.TorchServeJson(map, parallelism);
        Assert.True(one.Body.Span.SequenceEqual(split.Body.Span));
        Assert.Equal((byte)'[', one.Body.Span[0]);
        Assert.Equal("]]]"u8.ToArray(), one.Body.Span[^3..].ToArray());
        one.BodyOwner!.Dispose();
        split.BodyOwner!.Dispose();
    }

    private static RgbImage Noise(int w, int h, int seed)
    {
        var image = RgbImage.Create(w, h);
        // Smooth structure plus noise, so the filters see edges and gradients.
        var random = new Random(seed);
        for (var i = 0; i < image.Pixels.Length; i++) image.Pixels[i] = (byte)((i / 3 % w * 255 / w + random.Next(64)) & 0xFF);
        return image;
    }
}
