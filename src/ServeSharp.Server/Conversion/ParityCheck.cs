using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SessionOptions = Microsoft.ML.OnnxRuntime.SessionOptions;

namespace ServeSharp.Server.Conversion;

/// <summary>One tensor the torch side wrote: raw little-endian values in a file of the work folder.</summary>
internal sealed record TensorFile(string File, long[] Shape, string Dtype);

/// <summary>A parity input with torch's answer to it.</summary>
internal sealed record ParitySample(string Name, TensorFile Input, TensorFile Torch);

/// <summary>How ONNX Runtime's answer to one sample compares with torch's.</summary>
internal sealed record SampleParity(string Name, string Shape, long Positions, long Agreeing, double MaxAbsProbDelta)
{
    public double Agreement => Positions == 0 ? 0 : (double)Agreeing / Positions;
}

/// <summary>
/// The ONNX half of the parity check: runs the exported model in ONNX Runtime on the inputs torch saw, and compares
/// per position (pixel) the argmax over classes and the softmax probabilities. Samples of one size run as batches of
/// two, so the batch axis is exercised too (each sample still answers alone: the models are in eval mode).
/// </summary>
internal static class ParityCheck
{
    public static IReadOnlyList<SampleParity> Run(string onnxPath, string workFolder, IReadOnlyList<ParitySample> samples, CancellationToken cancellationToken)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        InferenceSession session;
        try
        {
            session = new InferenceSession(onnxPath, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ConversionException($"ONNX Runtime cannot load the exported model: {e.Message}", e);
        }
        using (session)
        {
            var input = session.InputMetadata.Keys.First();
            var output = session.OutputMetadata.ContainsKey("out") ? "out" : session.OutputMetadata.Keys.First();
            var results = new SampleParity[samples.Count];
            foreach (var group in samples.Select((s, i) => (Sample: s, Index: i)).GroupBy(x => string.Join('x', x.Sample.Input.Shape.Skip(1))))
            {
                foreach (var batch in group.Chunk(2))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var answers = RunBatch(session, input, output, workFolder, [.. batch.Select(b => b.Sample)]);
                    for (var k = 0; k < batch.Length; k++)
                        results[batch[k].Index] = Compare(batch[k].Sample, Read(workFolder, batch[k].Sample.Torch), answers[k]);
                }
            }
            return results;
        }
    }

    /// <summary>ONNX Runtime's answer per sample: floats (logits) or int64 class indices widened to double.</summary>
    private static double[][] RunBatch(InferenceSession session, string inputName, string outputName, string work, ParitySample[] batch)
    {
        var one = batch[0].Input.Shape;
        var per = checked((int)one.Skip(1).Aggregate(1L, (a, b) => a * b));
        var data = new float[per * batch.Length];
        for (var k = 0; k < batch.Length; k++) ReadFloats(work, batch[k].Input).CopyTo(data, k * per);
        long[] shape = [batch.Length, .. one.Skip(1)];
        using var tensor = OrtValue.CreateTensorValueFromMemory(data, shape);
        using var runOptions = new RunOptions();
        IDisposableReadOnlyCollection<OrtValue> outputs;
        try
        {
            outputs = session.Run(runOptions, [inputName], [tensor], [outputName]);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ConversionException($"ONNX Runtime cannot run the exported model on a {string.Join('x', shape)} input: {e.Message}", e);
        }
        using (outputs)
        {
            var info = outputs[0].GetTensorTypeAndShape();
            var values = info.ElementDataType == TensorElementType.Int64
                ? outputs[0].GetTensorDataAsSpan<long>().ToArray().Select(v => (double)v).ToArray()
                : outputs[0].GetTensorDataAsSpan<float>().ToArray().Select(v => (double)v).ToArray();
            var each = values.Length / batch.Length;
            return [.. Enumerable.Range(0, batch.Length).Select(k => values[(k * each)..((k + 1) * each)])];
        }
    }

    private static float[] ReadFloats(string work, TensorFile file) =>
        file.Dtype == "float32" ? MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(Path.Combine(work, file.File))).ToArray()
            : throw new ConversionException($"{file.File}: the model's input is {file.Dtype}; ServeSharp's handlers feed float32");

    private static double[] Read(string work, TensorFile file)
    {
        var bytes = File.ReadAllBytes(Path.Combine(work, file.File));
        return file.Dtype == "int64"
            ? [.. MemoryMarshal.Cast<byte, long>(bytes).ToArray().Select(v => (double)v)]
            : [.. MemoryMarshal.Cast<byte, float>(bytes).ToArray().Select(v => (double)v)];
    }

    /// <summary>
    /// Torch's answer (shape 1×C×rest) against ONNX Runtime's: per position, argmax over C and the largest |Δ| of the
    /// softmax over C. A class map (int64, already argmaxed) compares classes only. NaN never agrees.
    /// </summary>
    private static SampleParity Compare(ParitySample sample, double[] expected, double[] actual)
    {
        var shape = string.Join('x', sample.Torch.Shape);
        if (expected.Length != actual.Length)
            throw new ConversionException($"{sample.Name}: the ONNX model answers {actual.Length} values where torch answers {expected.Length} ({shape})");
        if (sample.Torch.Dtype == "int64" || sample.Torch.Shape.Length < 2)
        {
            long same = 0;
            for (var i = 0; i < expected.Length; i++) if (expected[i] == actual[i]) same++;
            return new SampleParity(sample.Name, shape, expected.Length, same, double.NaN);
        }

        var classes = (int)sample.Torch.Shape[1];
        var positions = expected.Length / classes;
        long agreeing = 0;
        var maxDelta = 0.0;
        var p = new double[classes];
        var q = new double[classes];
        for (var pos = 0; pos < positions; pos++)
        {
            var (e, pe) = Softmax(expected, pos, positions, p);
            var (a, pa) = Softmax(actual, pos, positions, q);
            if (e == a && e >= 0) agreeing++;
            if (!pe || !pa)
            {
                maxDelta = double.PositiveInfinity;
                continue;
            }
            for (var c = 0; c < classes; c++) maxDelta = Math.Max(maxDelta, Math.Abs(p[c] - q[c]));
        }
        return new SampleParity(sample.Name, shape, positions, agreeing, maxDelta);
    }

    // Softmax over the class axis at one position (values for class c are `positions` apart); returns the argmax
    // and whether every value was finite.
    private static (int Argmax, bool Finite) Softmax(double[] values, int pos, int positions, double[] into)
    {
        var best = -1;
        var max = double.NegativeInfinity;
        for (var c = 0; c < into.Length; c++)
        {
            var v = values[(c * positions) + pos];
            if (!double.IsFinite(v)) return (-1, false);
            if (v > max)
            {
                max = v;
                best = c;
            }
        }
        var sum = 0.0;
        for (var c = 0; c < into.Length; c++) sum += into[c] = Math.Exp(values[(c * positions) + pos] - max);
        for (var c = 0; c < into.Length; c++) into[c] /= sum;
        return (best, true);
    }
}
