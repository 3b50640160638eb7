using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using ServeSharp.Sdk;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// The ONNX model as image_segmenter needs it, checked against ONNX Runtime's metadata at load: a float
/// N×3×H×W input, and an output that is either logits (float N×C×H×W, "out" preferred) or a class map that
/// already went through argmax (int64 N×H×W).
/// </summary>
internal sealed class SegmentationModel
{
    private readonly InferenceSession _session;
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;

    private SegmentationModel(InferenceSession session, string input, string output, bool outputsClasses, (int H, int W)? fixedSize)
    {
        _session = session;
        _inputNames = [input];
        _outputNames = [output];
        OutputsClasses = outputsClasses;
        FixedInputSize = fixedSize;
    }

    /// <summary>The model's image input.</summary>
    public string InputName => _inputNames[0];

    /// <summary>True when the model ends in an argmax (int64 class map): maps only, no probabilities.</summary>
    public bool OutputsClasses { get; }

    /// <summary>The input's height and width when the model was exported with fixed ones.</summary>
    public (int H, int W)? FixedInputSize { get; }

    public static SegmentationModel From(InferenceSession session, string modelFile)
    {
        if (session.InputMetadata.Count == 0) throw new HandlerLoadException($"{modelFile}: the model has no input");
        var (inputName, input) = session.InputMetadata.First();
        if (input.ElementDataType != TensorElementType.Float || input.Dimensions.Length != 4 || input.Dimensions[1] is not (3 or -1))
            throw new HandlerLoadException($"{modelFile}: input '{inputName}' is {input.ElementDataType} [{string.Join(", ", input.Dimensions)}]; image_segmenter needs a float N×3×H×W input");

        var outputName = session.OutputMetadata.ContainsKey("out") ? "out" : session.OutputMetadata.Keys.First();
        var output = session.OutputMetadata[outputName];
        var logits = output.ElementDataType == TensorElementType.Float && output.Dimensions.Length == 4;
        var classes = output.ElementDataType == TensorElementType.Int64 && output.Dimensions.Length == 3;
        if (!logits && !classes)
            throw new HandlerLoadException($"{modelFile}: output '{outputName}' is {output.ElementDataType} [{string.Join(", ", output.Dimensions)}]; image_segmenter needs float logits N×C×H×W or an int64 class map N×H×W");
        if (logits && output.Dimensions[1] > 255)
            throw new HandlerLoadException($"{modelFile}: output '{outputName}' has {output.Dimensions[1]} classes; image_segmenter supports up to 255");

        (int, int)? fixedSize = input.Dimensions[2] > 0 && input.Dimensions[3] > 0 ? (input.Dimensions[2], input.Dimensions[3]) : null;
        return new SegmentationModel(session, inputName, outputName, classes, fixedSize);
    }

    /// <summary>Reads a batch's logits (N×C×H×W) in place, inside ONNX Runtime's output buffer.</summary>
    public delegate void LogitsReader(ReadOnlySpan<float> logits, int classes, int outH, int outW);

    /// <summary>Runs n images of h×w (NCHW, contiguous) and returns a copy of the logits (for TTA, which resizes and sums them).</summary>
    public (float[] Logits, int Classes, int OutH, int OutW) RunLogits(Memory<float> batch, int n, int h, int w, CancellationToken cancellationToken)
    {
        (float[], int, int, int) result = default;
        RunLogits(batch, n, h, w, (logits, c, oh, ow) => result = (logits.ToArray(), c, oh, ow), cancellationToken);
        return result;
    }

    /// <summary>Runs a batch and hands the logits to <paramref name="read"/> without copying them out first.</summary>
    public void RunLogits(Memory<float> batch, int n, int h, int w, LogitsReader read, CancellationToken cancellationToken)
    {
        using var outputs = Run(batch, n, h, w, cancellationToken);
        var shape = outputs[0].GetTensorTypeAndShape().Shape;
        read(outputs[0].GetTensorDataAsSpan<float>(), (int)shape[1], (int)shape[2], (int)shape[3]);
    }

    /// <summary>
    /// Runs a batch and keeps ONNX Runtime's output alive for <paramref name="images"/> readers: each takes a lease
    /// and reads its slice of the logits in place; the buffer is freed when the last lease is released.
    /// </summary>
    internal (SharedOutputs Outputs, int Classes, int OutH, int OutW) RunShared(Memory<float> batch, int n, int h, int w, int images, CancellationToken cancellationToken)
    {
        var outputs = new SharedOutputs(Run(batch, n, h, w, cancellationToken), images);
        var shape = outputs.Shape;
        return (outputs, (int)shape[1], (int)shape[2], (int)shape[3]);
    }

    /// <summary>Reads a batch's class maps (N×H×W, int64) in place.</summary>
    public delegate void ClassesReader(ReadOnlySpan<long> classes, int outH, int outW);

    /// <summary>Runs a batch through a model that ends in argmax and hands the class maps to <paramref name="read"/>.</summary>
    public void RunClasses(Memory<float> batch, int n, int h, int w, ClassesReader read, CancellationToken cancellationToken)
    {
        using var outputs = Run(batch, n, h, w, cancellationToken);
        var shape = outputs[0].GetTensorTypeAndShape().Shape;
        read(outputs[0].GetTensorDataAsSpan<long>(), (int)shape[1], (int)shape[2]);
    }

    private IDisposableReadOnlyCollection<OrtValue> Run(Memory<float> batch, int n, int h, int w, CancellationToken cancellationToken)
    {
        // The input tensor is a view of the caller's (pooled) buffer: ONNX Runtime reads it without a copy.
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, batch, [n, 3, h, w]);
        return OrtCancellation.Run(_session, _inputNames, [input], _outputNames, cancellationToken);
    }
}
