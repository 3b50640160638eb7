namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// Per-class scores for one image, C×H×W: logits straight from the model (read in place in ONNX Runtime's output), or
/// probabilities (averaged by TTA).
/// </summary>
internal sealed record ScoreMap(ReadOnlyMemory<float> Data, int Classes, int Height, int Width, bool Probabilities);

/// <summary>A class index per pixel (255 = not predicted) and, when the model gives them, the winning class's probability.</summary>
internal sealed record ClassMap(byte[] Classes, float[]? Probs, int Width, int Height);

/// <summary>
/// What inference produced for one request: scores, or a class map (argmax models, sliding windows). When the scores
/// live in ONNX Runtime's buffer, <see cref="Owner"/> keeps it alive until the handler disposes the output.
/// </summary>
internal sealed record SegOutput(SegInput Input, ScoreMap? Scores, ClassMap? Map) : IDisposable
{
    public IDisposable? Owner { get; init; }

    public void Dispose() => Owner?.Dispose();
}

/// <summary>Scores → classes and probabilities, at any output size, without materialising resized C×H×W tensors.</summary>
internal static class MapDecoder
{
    public const byte NotPredicted = 255;

    /// <summary>
    /// Argmax and max-probability per pixel at outW×outH. Logits are first resized (bilinear, PyTorch semantics)
    /// and then soft-maxed, as torchvision's reference evaluation does; one output row at a time.
    /// </summary>
    public static ClassMap Decode(ScoreMap s, int outW, int outH, int parallelism = 1)
    {
        var classes = new byte[outW * outH];
        var probs = new float[outW * outH];
        var plane = s.Height * s.Width;
        var c = s.Classes;
        if (outW == s.Width && outH == s.Height)
        {
            Argmax.Planes(s.Data, c, plane, s.Probabilities, classes, probs, parallelism);
            return new ClassMap(classes, probs, outW, outH);
        }

        var x0 = new int[outW];
        var x1 = new int[outW];
        var lx = new float[outW];
        TensorOps.Axis(s.Width, outW, x0, x1, lx);
        var rows = new float[c * outW];
        for (var y = 0; y < outH; y++)
        {
            var (y0, y1, ly) = TensorOps.Source(s.Height, outH, y);
            for (var k = 0; k < c; k++)
            {
                var p = s.Data.Span.Slice(k * plane, plane);
                TensorOps.InterpolateRow(p.Slice(y0 * s.Width, s.Width), p.Slice(y1 * s.Width, s.Width), ly, x0, x1, lx, rows.AsSpan(k * outW, outW));
            }
            Argmax.Planes(rows, c, outW, s.Probabilities, classes.AsSpan(y * outW, outW), probs.AsSpan(y * outW, outW));
        }
        return new ClassMap(classes, probs, outW, outH);
    }

    /// <summary>
    /// Every class's probability at outW×outH (C×outH×outW): logits resized (bilinear, as <see cref="Decode"/>) and then
    /// soft-maxed, so the argmax of these planes is <see cref="Decode"/>'s class map.
    /// </summary>
    public static void Probabilities(ScoreMap s, int outW, int outH, Span<float> result)
    {
        result = result[..(s.Classes * outW * outH)];
        if (outW == s.Width && outH == s.Height) s.Data.Span[..result.Length].CopyTo(result);
        else TensorOps.Interpolate(s.Data.Span, s.Classes, s.Height, s.Width, result, outH, outW);
        if (!s.Probabilities) Argmax.SoftmaxPlanes(result, s.Classes, outW * outH);
    }

    /// <summary>Nearest-neighbour resize of a class map (pixel centres), for maps that have no scores to interpolate.</summary>
    public static ClassMap Nearest(ClassMap m, int outW, int outH)
    {
        if (outW == m.Width && outH == m.Height) return m;
        var classes = new byte[outW * outH];
        var probs = m.Probs is null ? null : new float[outW * outH];
        for (var y = 0; y < outH; y++)
        {
            var sy = Math.Min(m.Height - 1, (int)((y + 0.5) * m.Height / outH));
            for (var x = 0; x < outW; x++)
            {
                var sx = Math.Min(m.Width - 1, (int)((x + 0.5) * m.Width / outW));
                classes[y * outW + x] = m.Classes[sy * m.Width + sx];
                if (probs is not null) probs[y * outW + x] = m.Probs![sy * m.Width + sx];
            }
        }
        return new ClassMap(classes, probs, outW, outH);
    }

    /// <summary>
    /// The result at the original image's size. A torchserve-mode result covers only the centre crop: it is placed
    /// back where the crop came from (nearest), and pixels outside it are 255 (not predicted).
    /// </summary>
    public static ClassMap ToOriginal(SegOutput output, int parallelism = 1)
    {
        var g = output.Input.Geometry;
        if (!g.IsCropped)
            return output.Scores is { } s ? Decode(s, g.OriginalWidth, g.OriginalHeight, parallelism) : Nearest(output.Map!, g.OriginalWidth, g.OriginalHeight);

        var crop = AtBase(output, parallelism);
        var classes = new byte[g.OriginalWidth * g.OriginalHeight];
        var probs = crop.Probs is null ? null : new float[classes.Length];
        Array.Fill(classes, NotPredicted);
        for (var y = 0; y < g.OriginalHeight; y++)
        {
            var by = (int)((y + 0.5) * g.ResizedHeight / g.OriginalHeight) - g.CropY;
            if (by < 0 || by >= g.BaseHeight) continue;
            for (var x = 0; x < g.OriginalWidth; x++)
            {
                var bx = (int)((x + 0.5) * g.ResizedWidth / g.OriginalWidth) - g.CropX;
                if (bx < 0 || bx >= g.BaseWidth) continue;
                classes[y * g.OriginalWidth + x] = crop.Classes[by * g.BaseWidth + bx];
                if (probs is not null) probs[y * g.OriginalWidth + x] = crop.Probs![by * g.BaseWidth + bx];
            }
        }
        return new ClassMap(classes, probs, g.OriginalWidth, g.OriginalHeight);
    }

    /// <summary>The result at the model's input resolution (TorchServe's JSON is at this size in torchserve mode).</summary>
    public static ClassMap AtBase(SegOutput output, int parallelism = 1)
    {
        var g = output.Input.Geometry;
        return output.Scores is { } s ? Decode(s, g.BaseWidth, g.BaseHeight, parallelism) : Nearest(output.Map!, g.BaseWidth, g.BaseHeight);
    }
}
