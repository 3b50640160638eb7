namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// PIL's <c>Image.resize(size, BILINEAR)</c> on an 8-bit RGB image, bit for bit: a separable, antialiased
/// triangle filter whose support widens with the downscale factor, fixed-point weights (22 fractional bits),
/// horizontal pass first, rounded to uint8 between the passes. This is what torchvision's Resize does to a
/// PIL image, so it is what TorchServe's handlers feed their models.
/// </summary>
internal static class PilResize
{
    private const int PrecisionBits = 32 - 8 - 2;

    public static RgbImage Resize(RgbImage image, int width, int height)
    {
        if (width == image.Width && height == image.Height) return image;
        var horizontal = width == image.Width ? image : Pass(image, width, image.Height, horizontal: true);
        return height == image.Height ? horizontal : Pass(horizontal, width, height, horizontal: false);
    }

    /// <summary>torchvision's Resize(int): the shorter side becomes <paramref name="size"/>, the longer int(size·long/short).</summary>
    public static (int Width, int Height) ShorterSideTo(int width, int height, int size) =>
        width <= height ? (size, (int)((long)size * height / width)) : ((int)((long)size * width / height), size);

    private static RgbImage Pass(RgbImage src, int outWidth, int outHeight, bool horizontal)
    {
        var inSize = horizontal ? src.Width : src.Height;
        var outSize = horizontal ? outWidth : outHeight;
        var (bounds, weights, kernelSize) = Coefficients(inSize, outSize);
        var dst = RgbImage.Create(outWidth, outHeight);
        var s = src.Pixels;
        var d = dst.Pixels;
        const int half = 1 << (PrecisionBits - 1);

        if (horizontal)
        {
            for (var y = 0; y < outHeight; y++)
            {
                var row = y * src.Width * 3;
                for (var x = 0; x < outWidth; x++)
                {
                    int start = bounds[x * 2], count = bounds[x * 2 + 1];
                    int r = half, g = half, b = half;
                    var k = x * kernelSize;
                    for (var i = 0; i < count; i++)
                    {
                        var p = row + (start + i) * 3;
                        var w = weights[k + i];
                        r += s[p] * w;
                        g += s[p + 1] * w;
                        b += s[p + 2] * w;
                    }
                    var o = (y * outWidth + x) * 3;
                    d[o] = Clip8(r);
                    d[o + 1] = Clip8(g);
                    d[o + 2] = Clip8(b);
                }
            }
        }
        else
        {
            var stride = src.Width * 3;
            for (var y = 0; y < outHeight; y++)
            {
                int start = bounds[y * 2], count = bounds[y * 2 + 1];
                var k = y * kernelSize;
                for (var x = 0; x < outWidth * 3; x++)
                {
                    var acc = half;
                    for (var i = 0; i < count; i++) acc += s[(start + i) * stride + x] * weights[k + i];
                    d[y * stride + x] = Clip8(acc);
                }
            }
        }
        return dst;
    }

    private static byte Clip8(int value) =>
        value >= (1 << PrecisionBits << 8) ? (byte)255 : value <= 0 ? (byte)0 : (byte)(value >> PrecisionBits);

    /// <summary>PIL's precompute_coeffs + normalize_coeffs_8bpc for the bilinear (triangle, support 1) filter.</summary>
    private static (int[] Bounds, int[] Weights, int KernelSize) Coefficients(int inSize, int outSize)
    {
        var scale = (double)inSize / outSize;
        var filterScale = Math.Max(scale, 1.0);
        var support = 1.0 * filterScale;
        var kernelSize = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[outSize * 2];
        var weights = new int[outSize * kernelSize];
        var k = new double[kernelSize];
        for (var xx = 0; xx < outSize; xx++)
        {
            var center = (xx + 0.5) * scale;
            var invScale = 1.0 / filterScale;
            var xmin = (int)(center - support + 0.5);
            if (xmin < 0) xmin = 0;
            var xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            var total = 0.0;
            for (var x = 0; x < xmax; x++)
            {
                var t = Math.Abs((x + xmin - center + 0.5) * invScale);
                k[x] = t < 1.0 ? 1.0 - t : 0.0;
                total += k[x];
            }
            for (var x = 0; x < xmax; x++)
            {
                var w = total != 0.0 ? k[x] / total : k[x];
                weights[xx * kernelSize + x] = w < 0 ? (int)(-0.5 + w * (1 << PrecisionBits)) : (int)(0.5 + w * (1 << PrecisionBits));
            }
            bounds[xx * 2] = xmin;
            bounds[xx * 2 + 1] = xmax;
        }
        return (bounds, weights, kernelSize);
    }
}
