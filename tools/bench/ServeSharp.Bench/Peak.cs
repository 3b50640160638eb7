using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;

namespace ServeSharp.Bench;

/// <summary>
/// The machine's measured peak: the best rate ONNX Runtime reaches on the kernels a DeepLab is made of (MatMul,
/// chains of 3×3 and 1×1 convolutions), with every core; and a model's compute rate from its FLOP count.
/// </summary>
public sealed record Peak(IReadOnlyList<(string Kernel, double GflopPerSecond)> Kernels)
{
    public double Best => Kernels.Max(k => k.GflopPerSecond);

    public static Peak Measure(string work, Func<string, string[], string> python)
    {
        var dir = Path.Combine(work, "peak");
        python("tools/bench/peak_onnx.py", [dir]);
        var kernels = new List<(string, double)>();
        foreach (var n in new[] { 1024, 2048 })
            kernels.Add(($"MatMul {n}³", Rate(Path.Combine(dir, "matmul.onnx"), [("A", [n, n]), ("B", [n, n])], 2.0 * n * n * n)));
        const int hw = 64;
        kernels.Add(($"8 × Conv 3×3 256→256 at {hw}²", Rate(Path.Combine(dir, "conv3x3.onnx"), [("X", [1, 256, hw, hw])], 8 * 2.0 * 256 * 256 * 9 * hw * hw)));
        kernels.Add(($"8 × Conv 1×1 1024↔256 at {hw}²", Rate(Path.Combine(dir, "conv1x1.onnx"), [("X", [1, 1024, hw, hw])], 8 * 2.0 * 1024 * 256 * hw * hw)));
        return new Peak(kernels);
    }

    /// <summary>deeplabv3 at h×w: GFLOP (tools/bench/flops.py, from the torch model) and the best of three ORT runs.</summary>
    public static (double Gflop, double Seconds) ModelRate(string onnx, string state, int h, int w, Func<string, string[], string> python)
    {
        var text = python("tools/bench/flops.py", ["--state", state, "--height", $"{h}", "--width", $"{w}"]);
        var gflop = double.Parse(text.Trim().Split('\n')[^1], CultureInfo.InvariantCulture);
        return (gflop, Seconds(onnx, [("input", [1, 3, h, w])], runs: 3));
    }

    private static double Rate(string model, (string Name, long[] Shape)[] inputs, double flop) => flop / Seconds(model, inputs, runs: 5) / 1e9;

    private static double Seconds(string model, (string Name, long[] Shape)[] inputs, int runs)
    {
        using var options = new SessionOptions { IntraOpNumThreads = Environment.ProcessorCount, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var session = new InferenceSession(model, options);
        var random = new Random(0);
        var values = inputs.Select(i =>
        {
            var data = new float[i.Shape.Aggregate(1L, (a, b) => a * b)];
            for (var k = 0; k < data.Length; k++) data[k] = (float)random.NextDouble();
            return OrtValue.CreateTensorValueFromMemory(data, i.Shape);
        }).ToArray();
        try
        {
            var names = inputs.Select(i => i.Name).ToArray();
            var output = session.OutputMetadata.Keys.First();
            using var run = new RunOptions();
            var best = double.MaxValue;
            for (var i = 0; i < runs; i++)
            {
                var t = Stopwatch.StartNew();
                using var r = session.Run(run, names, values, [output]);
                best = Math.Min(best, t.Elapsed.TotalSeconds);
            }
            return best;
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }
}
