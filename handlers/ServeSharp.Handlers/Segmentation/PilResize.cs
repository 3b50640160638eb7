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

    public static RgbImage Resize(RgbImage image, int width, int height) => ResizeCrop(image, width, height, 0, 0, width, height);

    /// <summary>
    /// The window [x, x+w) × [y, y+h) of the image resized to width×height (a resize followed by a crop, as
    /// torchvision's Resize and CenterCrop), computing only that window: each output pixel depends on its own filter
    /// taps alone, so the pixels are those of the whole resize. The horizontal pass runs only over the source rows
    /// the window's vertical taps read (PIL trims its first pass to them as well).
    /// </summary>
    public static RgbImage ResizeCrop(RgbImage image, int width, int height, int x, int y, int w, int h)
    {
        var needHorizontal = width != image.Width;
        var needVertical = height != image.Height;
        if (!needHorizontal && !needVertical) return w == width && h == height ? image : image.Crop(x, y, w, h);

        // The source rows the window needs: its own rows, or those its vertical taps read.
        int firstRow = y, rows = h;
        (int[] Bounds, int[] Weights, int KernelSize) vertical = default;
        if (needVertical)
        {
            vertical = Coefficients(image.Height, height);
            firstRow = vertical.Bounds[y * 2];
            var last = y + h - 1;
            rows = vertical.Bounds[last * 2] + vertical.Bounds[last * 2 + 1] - firstRow;
        }

        // Horizontal pass: the window's columns over those rows (or a plain copy of them when the width stays).
        var band = needHorizontal
            ? Horizontal(image, Coefficients(image.Width, width), x, w, firstRow, rows)
            : image.Crop(x, firstRow, w, rows);
        return needVertical ? Vertical(band, vertical, firstRow, y, h) : band;
    }

    /// <summary>torchvision's Resize(int): the shorter side becomes <paramref name="size"/>, the longer int(size·long/short).</summary>
    public static (int Width, int Height) ShorterSideTo(int width, int height, int size) =>
        width <= height ? (size, (int)((long)size * height / width)) : ((int)((long)size * width / height), size);

    // Output columns [x0, x0+w) of each of the source rows [firstRow, firstRow+rows).
    private static RgbImage Horizontal(RgbImage src, (int[] Bounds, int[] Weights, int KernelSize) c, int x0, int w, int firstRow, int rows)
    {
        var dst = RgbImage.Create(w, rows);
        ReadOnlySpan<byte> s = src.Pixels;
        var d = dst.Pixels.AsSpan();
        const int half = 1 << (PrecisionBits - 1);
        for (var y = 0; y < rows; y++)
        {
            var row = s.Slice((firstRow + y) * src.Width * 3, src.Width * 3);
            var output = d.Slice(y * w * 3, w * 3);
            for (var x = 0; x < w; x++)
            {
                int start = c.Bounds[(x0 + x) * 2], count = c.Bounds[(x0 + x) * 2 + 1];
                var taps = row.Slice(start * 3, count * 3);
                var weights = c.Weights.AsSpan((x0 + x) * c.KernelSize, count);
                int r = half, g = half, b = half;
                for (var i = 0; i < weights.Length; i++)
                {
                    var wt = weights[i];
                    r += taps[i * 3] * wt;
                    g += taps[i * 3 + 1] * wt;
                    b += taps[i * 3 + 2] * wt;
                }
                output[x * 3] = Clip8(r);
                output[x * 3 + 1] = Clip8(g);
                output[x * 3 + 2] = Clip8(b);
            }
        }
        return dst;
    }

    // Output rows [y0, y0+h) from a band whose first row is source row firstRow.
    private static RgbImage Vertical(RgbImage band, (int[] Bounds, int[] Weights, int KernelSize) c, int firstRow, int y0, int h)
    {
        var stride = band.Width * 3;
        var dst = RgbImage.Create(band.Width, h);
        ReadOnlySpan<byte> s = band.Pixels;
        var d = dst.Pixels.AsSpan();
        const int half = 1 << (PrecisionBits - 1);
        var acc = new int[stride];
        for (var y = 0; y < h; y++)
        {
            int start = c.Bounds[(y0 + y) * 2] - firstRow, count = c.Bounds[(y0 + y) * 2 + 1];
            var weights = c.Weights.AsSpan((y0 + y) * c.KernelSize, count);
            // Row by row over the taps: each pass is a contiguous sweep (the sums are integers, so their order is free).
            acc.AsSpan().Fill(half);
            for (var i = 0; i < weights.Length; i++)
            {
                var wt = weights[i];
                var source = s.Slice((start + i) * stride, stride);
                for (var x = 0; x < stride; x++) acc[x] += source[x] * wt;
            }
            var output = d.Slice(y * stride, stride);
            for (var x = 0; x < stride; x++) output[x] = Clip8(acc[x]);
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
