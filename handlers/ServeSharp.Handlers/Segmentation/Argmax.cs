using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// Per-pixel argmax and softmax probability over C planes of scores (C×N, class-major as the model writes them),
/// one plane at a time so every pass is a contiguous, vectorised sweep instead of a strided gather per pixel.
/// </summary>
internal static class Argmax
{
    /// <summary>
    /// classes[i] = the first class with the largest score at pixel i (torch.max's choice); probs[i] = that class's
    /// softmax probability, 1 / Σₖ exp(sₖ − max), or the score itself when the planes already hold probabilities.
    /// </summary>
    public static void Planes(ReadOnlySpan<float> planes, int classes, int pixels, bool probabilities, Span<byte> best, Span<float> probs) =>
        Range(planes, classes, pixels, probabilities, best, probs, 0, pixels);

    /// <summary>
    /// <see cref="Planes(ReadOnlySpan{float}, int, int, bool, Span{byte}, Span{float})"/> on up to
    /// <paramref name="parallelism"/> threads, each over its own range of whole blocks: the worker's ONNX Runtime threads
    /// are idle between runs, and a pixel's answer does not depend on who computes it.
    /// </summary>
    public static void Planes(ReadOnlyMemory<float> planes, int classes, int pixels, bool probabilities, byte[] best, float[] probs, int parallelism)
    {
        var parts = PixelParts.For(parallelism, pixels);
        if (parts <= 1)
        {
            Planes(planes.Span, classes, pixels, probabilities, best, probs);
            return;
        }
        var per = (pixels / parts + Block - 1) / Block * Block;
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, p =>
        {
            int from = p * per, to = Math.Min(pixels, from + per);
            if (from < to) Range(planes.Span, classes, pixels, probabilities, best, probs, from, to);
        });
    }

    private static void Range(ReadOnlySpan<float> planes, int classes, int pixels, bool probabilities, Span<byte> best, Span<float> probs, int from, int to)
    {
        // A block of pixels at a time, so its running max, indices and exp terms stay in L1 across all C planes
        // (whole planes of 224² pixels made every pass a trip to L2 or memory). The per-pixel arithmetic and its order
        // are the same, so the answers are too. A short tail joins the block before it: TensorPrimitives treats fewer
        // elements than a vector on a scalar path, whose exp may differ in the last bit.
        Span<float> max = stackalloc float[MaxBlock];
        Span<float> index = stackalloc float[MaxBlock];
        for (var start = from; start < to;)
        {
            var n = to - start <= MaxBlock ? to - start : Block;
            var m = max[..n];
            var idx = index[..n];
            planes.Slice(start, n).CopyTo(m);
            idx.Clear();
            for (var k = 1; k < classes; k++) KeepGreater(planes.Slice(k * pixels + start, n), k, m, idx);
            var winners = best.Slice(start, n);
            for (var i = 0; i < n; i++) winners[i] = (byte)idx[i];

            var p = probs.Slice(start, n);
            if (probabilities)
            {
                m.CopyTo(p);
            }
            else
            {
                // Σₖ exp(sₖ − max), accumulated in p, then inverted: the winner's exp(0) / Σ.
                var term = idx; // the indices are no longer needed
                p.Clear();
                for (var k = 0; k < classes; k++)
                {
                    TensorPrimitives.Subtract(planes.Slice(k * pixels + start, n), m, term);
                    TensorPrimitives.Exp(term, term);
                    TensorPrimitives.Add(p, term, p);
                }
                TensorPrimitives.Reciprocal(p, p);
            }
            start += n;
        }
    }

    // 1024 floats per buffer: with the plane's slice and the exp terms, a block's working set is a few KiB.
    private const int Block = 1024;
    private const int MaxBlock = Block + 32; // a last block is this long at most, so no block is shorter than a vector

    /// <summary>Softmax over the class axis of C planes, in place: planes[k][i] = exp(sₖ − max) / Σⱼ exp(sⱼ − max).</summary>
    public static void SoftmaxPlanes(Span<float> planes, int classes, int pixels)
    {
        var max = ArrayPool<float>.Shared.Rent(pixels);
        var sum = ArrayPool<float>.Shared.Rent(pixels);
        try
        {
            var m = max.AsSpan(0, pixels);
            var total = sum.AsSpan(0, pixels);
            planes[..pixels].CopyTo(m);
            for (var k = 1; k < classes; k++) TensorPrimitives.Max(m, planes.Slice(k * pixels, pixels), m);
            total.Clear();
            for (var k = 0; k < classes; k++)
            {
                var plane = planes.Slice(k * pixels, pixels);
                TensorPrimitives.Subtract(plane, m, plane);
                TensorPrimitives.Exp(plane, plane);
                TensorPrimitives.Add(total, plane, total);
            }
            for (var k = 0; k < classes; k++) TensorPrimitives.Divide(planes.Slice(k * pixels, pixels), total, planes.Slice(k * pixels, pixels));
        }
        finally
        {
            ArrayPool<float>.Shared.Return(max);
            ArrayPool<float>.Shared.Return(sum);
        }
    }

    // Strictly greater keeps the earlier class on ties, as torch.max does.
    private static void KeepGreater(ReadOnlySpan<float> scores, int k, Span<float> max, Span<float> index)
    {
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var kv = Vector256.Create((float)k);
            for (; i <= scores.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var s = Vector256.Create(scores.Slice(i, Vector256<float>.Count));
                var mv = Vector256.Create(max.Slice(i, Vector256<float>.Count));
                var greater = Vector256.GreaterThan(s, mv);
                Vector256.ConditionalSelect(greater, s, mv).CopyTo(max.Slice(i));
                Vector256.ConditionalSelect(greater, kv, Vector256.Create(index.Slice(i, Vector256<float>.Count))).CopyTo(index.Slice(i));
            }
        }
        for (; i < scores.Length; i++)
        {
            if (scores[i] > max[i])
            {
                max[i] = scores[i];
                index[i] = k;
            }
        }
    }
}
