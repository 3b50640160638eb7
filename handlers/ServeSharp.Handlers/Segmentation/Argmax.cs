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
    public static void Planes(ReadOnlySpan<float> planes, int classes, int pixels, bool probabilities, Span<byte> best, Span<float> probs)
    {
        var max = ArrayPool<float>.Shared.Rent(pixels);
        var index = ArrayPool<float>.Shared.Rent(pixels);
        try
        {
            var m = max.AsSpan(0, pixels);
            var idx = index.AsSpan(0, pixels);
            planes[..pixels].CopyTo(m);
            idx.Clear();
            for (var k = 1; k < classes; k++) KeepGreater(planes.Slice(k * pixels, pixels), k, m, idx);
            for (var i = 0; i < pixels; i++) best[i] = (byte)idx[i];

            if (probabilities)
            {
                m.CopyTo(probs);
                return;
            }
            // Σₖ exp(sₖ − max), accumulated in probs, then inverted: the winner's exp(0) / Σ.
            var term = idx; // the indices are no longer needed
            probs[..pixels].Clear();
            for (var k = 0; k < classes; k++)
            {
                TensorPrimitives.Subtract(planes.Slice(k * pixels, pixels), m, term);
                TensorPrimitives.Exp(term, term);
                TensorPrimitives.Add(probs[..pixels], term, probs[..pixels]);
            }
            TensorPrimitives.Reciprocal(probs[..pixels], probs[..pixels]);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(max);
            ArrayPool<float>.Shared.Return(index);
        }
    }

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
