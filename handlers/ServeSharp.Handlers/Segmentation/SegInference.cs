using System.Buffers;
using System.Numerics.Tensors;
using ServeSharp.Sdk;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// The three ways image_segmenter runs the model: one pass over a batch of same-sized inputs; multi-scale and
/// flip TTA (mmsegmentation's semantics: softmax probabilities averaged at the base resolution); and sliding
/// windows (logits summed over overlapping windows and divided by the overlap count, windows clamped to the edge).
/// </summary>
internal static class SegInference
{
    // About two 512×512 windows per ONNX Runtime run.
    private const int WindowPixelsPerRun = 2 * 512 * 512;

    /// <summary>
    /// One forward pass for inputs that share a size, as one batch. A batch of one runs on its own pooled tensor; a
    /// larger one is gathered into a pooled buffer. The logits stay in ONNX Runtime's output: each result reads its
    /// slice in place and releases its lease when the handler disposes it.
    /// </summary>
    public static SegOutput[] RunBatch(SegmentationModel model, IReadOnlyList<SegInput> group, CancellationToken cancellationToken)
    {
        var g = group[0].Geometry;
        int h = g.BaseHeight, w = g.BaseWidth, n = group.Count, size = 3 * h * w;
        var pooled = n == 1 ? null : ArrayPool<float>.Shared.Rent(n * size);
        try
        {
            var batch = pooled is null ? group[0].Tensor : pooled.AsMemory(0, n * size);
            for (var i = 0; n > 1 && i < n; i++) group[i].Tensor.CopyTo(batch[(i * size)..]);

            var outputs = new SegOutput[n];
            if (model.OutputsClasses)
            {
                model.RunClasses(batch, n, h, w, (classes, oh, ow) =>
                {
                    var per = oh * ow;
                    for (var i = 0; i < n; i++)
                    {
                        var map = new byte[per];
                        var src = classes.Slice(i * per, per);
                        for (var p = 0; p < per; p++) map[p] = (byte)Math.Clamp(src[p], 0, 255);
                        outputs[i] = new SegOutput(group[i], null, new ClassMap(map, null, ow, oh));
                    }
                }, cancellationToken);
                return outputs;
            }

            var (shared, c, outH, outW) = model.RunShared(batch, n, h, w, n, cancellationToken);
            var logits = shared.Floats();
            var per = c * outH * outW;
            for (var i = 0; i < n; i++)
                outputs[i] = new SegOutput(group[i], new ScoreMap(logits.Slice(i * per, per), c, outH, outW, Probabilities: false), null) { Owner = shared.Lease() };
            return outputs;
        }
        finally
        {
            if (pooled is not null) ArrayPool<float>.Shared.Return(pooled);
        }
    }

    /// <summary>
    /// One forward pass through the class head (argmax and confidence inside the graph, see <see cref="ClassHeadRunner"/>)
    /// for inputs that share a size and need only the class map at the model's resolution. Falls back to
    /// <see cref="RunBatch"/> when the model's output is not at its input's size.
    /// </summary>
    public static SegOutput[] RunHead(ClassHeadRunner head, SegmentationModel model, IReadOnlyList<SegInput> group, CancellationToken cancellationToken)
    {
        var g = group[0].Geometry;
        int h = g.BaseHeight, w = g.BaseWidth, n = group.Count, size = 3 * h * w;
        var pooled = n == 1 ? null : ArrayPool<float>.Shared.Rent(n * size);
        ClassMap[]? maps;
        try
        {
            var batch = pooled is null ? group[0].Tensor : pooled.AsMemory(0, n * size);
            for (var i = 0; n > 1 && i < n; i++) group[i].Tensor.CopyTo(batch[(i * size)..]);
            maps = head.Run(batch, n, h, w, cancellationToken);
        }
        finally
        {
            if (pooled is not null) ArrayPool<float>.Shared.Return(pooled);
        }
        if (maps is null) return RunBatch(model, group, cancellationToken);
        var outputs = new SegOutput[n];
        for (var i = 0; i < n; i++) outputs[i] = new SegOutput(group[i], null, maps[i]);
        return outputs;
    }

    /// <summary>Multi-scale (and flipped) passes; probabilities averaged at the base resolution.</summary>
    public static SegOutput RunTta(SegmentationModel model, SegInput input, CancellationToken cancellationToken)
    {
        RequireLogits(model, "multi-scale/flip inference");
        var g = input.Geometry;
        int h = g.BaseHeight, w = g.BaseWidth;
        float[]? sum = null;
        var classes = 0;
        var passes = 0;
        foreach (var scale in input.Options.Scales)
        {
            var sh = Math.Max(1, (int)Math.Round(h * scale, MidpointRounding.ToEven));
            var sw = Math.Max(1, (int)Math.Round(w * scale, MidpointRounding.ToEven));
            var scaled = sh == h && sw == w ? input.Tensor : Resized(input.Tensor.Span, 3, h, w, sh, sw);
            foreach (var flip in input.Options.Flip ? [false, true] : new[] { false })
            {
                cancellationToken.ThrowIfCancellationRequested();
                var x = flip ? scaled.ToArray() : scaled;
                if (flip) TensorOps.FlipWidth(x.Span, 3, sh, sw);
                var (logits, c, oh, ow) = model.RunLogits(x, 1, sh, sw, cancellationToken);
                if (flip) TensorOps.FlipWidth(logits, c, oh, ow);
                var atBase = oh == h && ow == w ? logits : Resized(logits, c, oh, ow, h, w);
                sum ??= new float[c * h * w];
                classes = c;
                AddSoftmax(atBase, c, h * w, sum);
                passes++;
            }
        }
        for (var i = 0; i < sum!.Length; i++) sum[i] /= passes;
        return new SegOutput(input, new ScoreMap(sum, classes, h, w, Probabilities: true), null);
    }

    /// <summary>
    /// Sliding windows over the base image, one band of windows at a time: rows are finalised (averaged, soft-maxed,
    /// arg-maxed) as soon as no later window can touch them, so memory is bounded by crop height × image width.
    /// </summary>
    public static SegOutput RunSlide(SegmentationModel model, SegInput input, CancellationToken cancellationToken)
    {
        RequireLogits(model, "sliding-window inference");
        var g = input.Geometry;
        int h = g.BaseHeight, w = g.BaseWidth;
        var (cropH, cropW) = input.Options.SlideCrop!.Value;
        var (strideH, strideW) = input.Options.SlideStride ?? (Math.Max(1, cropH * 2 / 3), Math.Max(1, cropW * 2 / 3));
        var rowsOfWindows = Math.Max(h - cropH + strideH - 1, 0) / strideH + 1;
        var colsOfWindows = Math.Max(w - cropW + strideW - 1, 0) / strideW + 1;
        var bandHeight = Math.Min(cropH, h);

        var classes = new byte[h * w];
        var probs = new float[h * w];
        float[]? acc = null; // C × bandHeight × w, rows [top, top + bandHeight)
        var counts = new int[bandHeight * w];
        var top = 0;
        var c = 0;

        for (var hi = 0; hi < rowsOfWindows; hi++)
        {
            var y2 = Math.Min(hi * strideH + cropH, h);
            var y1 = Math.Max(y2 - cropH, 0);
            if (acc is not null) Finalise(acc, counts, c, w, bandHeight, ref top, y1, classes, probs);

            // The band's windows share a size; they run a few at a time (batching buys nothing on a CPU, and each
            // extra window in a run adds its activations to ONNX Runtime's peak memory).
            var windows = new List<(int X1, int X2)>();
            for (var wi = 0; wi < colsOfWindows; wi++)
            {
                var x2 = Math.Min(wi * strideW + cropW, w);
                windows.Add((Math.Max(x2 - cropW, 0), x2));
            }
            int wh = y2 - y1, ww = windows[0].X2 - windows[0].X1, size = 3 * wh * ww;
            var perRun = Math.Clamp(WindowPixelsPerRun / (wh * ww), 1, windows.Count);
            var batch = ArrayPool<float>.Shared.Rent(perRun * size);
            try
            {
                for (var first = 0; first < windows.Count; first += perRun)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var count = Math.Min(perRun, windows.Count - first);
                    for (var k = 0; k < count; k++) CopyWindow(input.Tensor.Span, h, w, y1, windows[first + k].X1, wh, ww, batch.AsSpan(k * size, size));
                    model.RunLogits(batch.AsMemory(0, count * size), count, wh, ww, (logits, classCount, oh, ow) =>
                    {
                        if (oh != wh || ow != ww) throw new HandlerException(500, $"sliding windows need a model whose output has its input's size (got {oh}x{ow} for {wh}x{ww})");
                        c = classCount;
                        acc ??= new float[c * bandHeight * w];
                        for (var k = 0; k < count; k++)
                            AddWindow(logits.Slice(k * c * wh * ww, c * wh * ww), c, wh, ww, y1 - top, windows[first + k].X1, acc, counts, bandHeight, w);
                    }, cancellationToken);
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(batch);
            }
        }
        Finalise(acc!, counts, c, w, bandHeight, ref top, h, classes, probs);
        return new SegOutput(input, null, new ClassMap(classes, probs, w, h));
    }

    private static void Finalise(float[] acc, int[] count, int c, int w, int band, ref int top, int until, byte[] classes, float[] probs)
    {
        var done = until - top;
        if (done <= 0) return;
        var rows = new float[c * w];
        var overlaps = new float[w];
        for (var r = 0; r < done; r++)
        {
            // Each pixel's logits summed over the windows that covered it, divided by how many did.
            for (var x = 0; x < w; x++) overlaps[x] = Math.Max(1, count[r * w + x]);
            for (var k = 0; k < c; k++) TensorPrimitives.Divide(acc.AsSpan(k * band * w + r * w, w), overlaps, rows.AsSpan(k * w, w));
            Argmax.Planes(rows, c, w, probabilities: false, classes.AsSpan((top + r) * w, w), probs.AsSpan((top + r) * w, w));
        }
        // Shift the rows still open to the top of the band buffer and clear the rest.
        var keep = band - done;
        for (var k = 0; k < c; k++)
        {
            var plane = acc.AsSpan(k * band * w, band * w);
            plane.Slice(done * w, keep * w).CopyTo(plane);
            plane.Slice(keep * w).Clear();
        }
        count.AsSpan(done * w, keep * w).CopyTo(count);
        count.AsSpan(keep * w).Clear();
        top = until;
    }

    private static void AddWindow(ReadOnlySpan<float> logits, int c, int wh, int ww, int rowOffset, int x1, float[] acc, int[] count, int band, int w)
    {
        for (var k = 0; k < c; k++)
        {
            for (var y = 0; y < wh; y++)
            {
                var src = logits.Slice((k * wh + y) * ww, ww);
                var dst = acc.AsSpan(k * band * w + (rowOffset + y) * w + x1, ww);
                TensorPrimitives.Add(dst, src, dst);
            }
        }
        for (var y = 0; y < wh; y++)
        {
            var row = count.AsSpan((rowOffset + y) * w + x1, ww);
            for (var x = 0; x < ww; x++) row[x]++;
        }
    }

    private static void CopyWindow(ReadOnlySpan<float> tensor, int h, int w, int y1, int x1, int wh, int ww, Span<float> dst)
    {
        for (var ch = 0; ch < 3; ch++)
        {
            for (var y = 0; y < wh; y++)
                tensor.Slice(ch * h * w + (y1 + y) * w + x1, ww).CopyTo(dst.Slice((ch * wh + y) * ww, ww));
        }
    }

    private static float[] Resized(ReadOnlySpan<float> src, int channels, int h, int w, int outH, int outW)
    {
        var dst = new float[channels * outH * outW];
        TensorOps.Interpolate(src, channels, h, w, dst, outH, outW);
        return dst;
    }

    /// <summary>Adds softmax over the class axis of C×plane logits into <paramref name="sum"/>.</summary>
    private static void AddSoftmax(float[] logits, int c, int plane, float[] sum)
    {
        var column = new float[c];
        for (var i = 0; i < plane; i++)
        {
            var max = float.NegativeInfinity;
            for (var k = 0; k < c; k++) max = Math.Max(max, logits[k * plane + i]);
            var total = 0f;
            for (var k = 0; k < c; k++) total += column[k] = MathF.Exp(logits[k * plane + i] - max);
            for (var k = 0; k < c; k++) sum[k * plane + i] += column[k] / total;
        }
    }

    private static void RequireLogits(SegmentationModel model, string what)
    {
        if (model.OutputsClasses)
            throw HandlerException.BadRequest($"{what} needs a model that outputs logits; this model ends in argmax");
    }
}
