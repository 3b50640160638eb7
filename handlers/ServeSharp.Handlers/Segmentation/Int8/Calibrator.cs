using System.Numerics.Tensors;
using Microsoft.ML.OnnxRuntime;

namespace ServeSharp.Handlers.Segmentation.Int8;

/// <summary>
/// Measures the activations' ranges: the fp32 model, with every activation to quantize added as an output, runs on the
/// calibration images preprocessed exactly as image_segmenter will preprocess requests for this archive (its mode,
/// sizes, mean and std), and each activation keeps its min and max over all of them.
/// </summary>
internal static class Calibrator
{
    public static Dictionary<string, TensorRange> Ranges(QdqQuantizer.Plan plan, IReadOnlyList<float[]> inputs, IReadOnlyList<(int H, int W)> sizes, int threads)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC, IntraOpNumThreads = threads };
        using var session = new InferenceSession(QdqQuantizer.WithOutputs(plan), options);
        var inputName = session.InputMetadata.Keys.First();
        var outputs = plan.Activations.Where(a => a != inputName).ToArray();
        var ranges = new Dictionary<string, TensorRange>(StringComparer.Ordinal);
        using var run = new RunOptions();

        for (var i = 0; i < inputs.Count; i++)
        {
            var (h, w) = sizes[i];
            Widen(ranges, inputName, inputs[i]);
            using var input = OrtValue.CreateTensorValueFromMemory(inputs[i], [1, 3, h, w]);
            using var results = session.Run(run, [inputName], [input], outputs);
            for (var k = 0; k < outputs.Length; k++) Widen(ranges, outputs[k], results[k].GetTensorDataAsSpan<float>());
        }
        return ranges;
    }

    private static void Widen(Dictionary<string, TensorRange> ranges, string name, ReadOnlySpan<float> values)
    {
        if (values.IsEmpty) return;
        var (min, max) = (TensorPrimitives.Min(values), TensorPrimitives.Max(values));
        ranges[name] = ranges.TryGetValue(name, out var r) ? new TensorRange(Math.Min(r.Min, min), Math.Max(r.Max, max)) : new TensorRange(min, max);
    }
}
