namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// Float-tensor steps with PyTorch's exact semantics: ToTensor+Normalize fused, and
/// <c>F.interpolate(mode="bilinear", align_corners=False)</c> (no antialias), the resize that TTA and
/// "map back to the image size" use.
/// </summary>
internal static class TensorOps
{
    /// <summary>RGB bytes → CHW floats, (v/255 − mean)/std per channel, written into <paramref name="chw"/>.</summary>
    public static void Normalize(RgbImage image, ReadOnlySpan<float> mean, ReadOnlySpan<float> std, Span<float> chw)
    {
        var plane = image.Width * image.Height;
        ReadOnlySpan<byte> pixels = image.Pixels.AsSpan(0, plane * 3);
        Span<float> table = stackalloc float[256];
        for (var c = 0; c < 3; c++)
        {
            // As torchvision computes it in float32: ToTensor divides by 255, Normalize subtracts then divides. A byte
            // has 256 values, so each channel's 256 answers are computed once, by that same expression, and looked up.
            var m = mean[c];
            var s = std[c];
            for (var v = 0; v < 256; v++) table[v] = (v / 255f - m) / s;
            var dst = chw.Slice(c * plane, plane);
            for (var i = 0; i < dst.Length; i++) dst[i] = table[pixels[i * 3 + c]];
        }
    }

    /// <summary>Bilinear resize of <paramref name="channels"/> planes from h×w to outH×outW (PyTorch, align_corners=False).</summary>
    public static void Interpolate(ReadOnlySpan<float> src, int channels, int h, int w, Span<float> dst, int outH, int outW)
    {
        var x0 = new int[outW];
        var x1 = new int[outW];
        var lx = new float[outW];
        Axis(w, outW, x0, x1, lx);
        for (var y = 0; y < outH; y++)
        {
            var (y0, y1, ly) = Source(h, outH, y);
            for (var c = 0; c < channels; c++)
            {
                var plane = src.Slice(c * h * w, h * w);
                InterpolateRow(plane.Slice(y0 * w, w), plane.Slice(y1 * w, w), ly, x0, x1, lx, dst.Slice(c * outH * outW + y * outW, outW));
            }
        }
    }

    /// <summary>One output row from two source rows: PyTorch's weighting, h0·(w0·a + w1·b) + h1·(w0·c + w1·d).</summary>
    public static void InterpolateRow(ReadOnlySpan<float> r0, ReadOnlySpan<float> r1, float ly, int[] x0, int[] x1, float[] lx, Span<float> output)
    {
        var hy = 1f - ly;
        for (var x = 0; x < output.Length; x++)
        {
            var l = lx[x];
            var h = 1f - l;
            output[x] = hy * (h * r0[x0[x]] + l * r0[x1[x]]) + ly * (h * r1[x0[x]] + l * r1[x1[x]]);
        }
    }

    /// <summary>The source indices and weight of output index <paramref name="dst"/> (PyTorch's area_pixel_compute_source_index).</summary>
    public static (int I0, int I1, float Lambda) Source(int inSize, int outSize, int dst)
    {
        var scale = (float)inSize / outSize;
        var src = Math.Max(scale * (dst + 0.5f) - 0.5f, 0f);
        var i0 = (int)src;
        var i1 = i0 < inSize - 1 ? i0 + 1 : i0;
        return (i0, i1, src - i0);
    }

    public static void Axis(int inSize, int outSize, int[] i0, int[] i1, float[] lambda)
    {
        for (var x = 0; x < outSize; x++) (i0[x], i1[x], lambda[x]) = Source(inSize, outSize, x);
    }

    /// <summary>Mirrors each row of each plane (torch.flip(x, [-1])).</summary>
    public static void FlipWidth(Span<float> planes, int channels, int h, int w)
    {
        for (var r = 0; r < channels * h; r++) planes.Slice(r * w, w).Reverse();
    }
}
