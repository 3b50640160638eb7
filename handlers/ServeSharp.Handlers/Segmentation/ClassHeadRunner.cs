using System.Numerics.Tensors;
using Microsoft.ML.OnnxRuntime;
using ServeSharp.Handlers.Segmentation.Graph;
using ServeSharp.Sdk;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// Runs a model that carries <see cref="ClassHead"/> through one <see cref="OrtIoBinding"/>: the pooled input tensor is
/// bound for each run, and the two H×W answers (class, confidence) land in host buffers kept per batch shape and reused,
/// so on a GPU a run copies back H×W values instead of C×H×W logits, into memory that is already there. One per worker
/// (a binding is not for concurrent runs); the worker calls it from its own thread only.
/// </summary>
internal sealed class ClassHeadRunner : IDisposable
{
    // Shapes a worker sees are few (torchserve mode: one); a handful covers mixed traffic without holding many buffers.
    private const int KeptShapes = 4;

    private readonly InferenceSession _session;
    private readonly string _inputName;
    private readonly OrtIoBinding _binding;
    private readonly List<Buffers> _kept = [];
    private bool _resizes;

    /// <summary>Batches answered through the head (not counting those it handed back to the logits path).</summary>
    public int Runs { get; private set; }

    /// <summary>Whether the first run found the model's output smaller than its input, so every batch now takes the logits path.</summary>
    public bool HandedBack => _resizes;

    public ClassHeadRunner(InferenceSession session, string inputName)
    {
        _session = session;
        _inputName = inputName;
        _binding = session.CreateIoBinding();
    }

    /// <summary>
    /// One class map (with confidences) per image of the batch, at the model's output size; null when the model's output
    /// is not at its input's size (the logits must then be resized before the argmax, which the head cannot do): that is
    /// learnt on the first run and the caller uses the logits from then on.
    /// </summary>
    public ClassMap[]? Run(Memory<float> batch, int n, int h, int w, CancellationToken cancellationToken)
    {
        if (_resizes) return null;
        cancellationToken.ThrowIfCancellationRequested();
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, batch, [n, 3, h, w]);
        try
        {
            _binding.BindInput(_inputName, input);
            if (Find(n, h, w) is { } kept)
            {
                _binding.BindOutput(ClassHead.Classes, kept.ClassesValue);
                _binding.BindOutput(ClassHead.Confidence, kept.ConfidenceValue);
                RunBound(cancellationToken);
                Runs++;
                return Split(kept.Classes, kept.Confidence, n, h, w);
            }

            // A shape not seen yet: ONNX Runtime allocates the outputs once, which says their size; the buffers for the
            // next runs of this shape are made to fit.
            _binding.BindOutputToDevice(ClassHead.Classes, OrtMemoryInfo.DefaultInstance);
            _binding.BindOutputToDevice(ClassHead.Confidence, OrtMemoryInfo.DefaultInstance);
            RunBound(cancellationToken);
            using var outputs = _binding.GetOutputValues();
            var shape = outputs[0].GetTensorTypeAndShape().Shape;
            if (shape[1] != h || shape[2] != w)
            {
                _resizes = true;
                return null;
            }
            Keep(new Buffers(n, h, w));
            Runs++;
            return Split(outputs[0].GetTensorDataAsSpan<long>(), outputs[1].GetTensorDataAsSpan<float>(), n, h, w);
        }
        finally
        {
            // The input is a view of a pooled buffer that goes back to the pool: the binding must not keep it.
            _binding.ClearBoundInputs();
            _binding.ClearBoundOutputs();
        }
    }

    private void RunBound(CancellationToken cancellationToken)
    {
        using var options = new RunOptions();
        using var link = OrtCancellation.Link(options, cancellationToken);
        try
        {
            _session.RunWithBinding(options, _binding);
            _binding.SynchronizeBoundOutputs();
        }
        catch (OnnxRuntimeException e) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("ONNX Runtime's run was terminated: the batch was cancelled", e, cancellationToken);
        }
    }

    // The per-request copy: H×W classes (int64 → byte; at most 255 classes) and confidences, each image its own arrays
    // because results outlive the next run.
    private static ClassMap[] Split(ReadOnlySpan<long> classes, ReadOnlySpan<float> confidence, int n, int h, int w)
    {
        var per = h * w;
        var maps = new ClassMap[n];
        for (var i = 0; i < n; i++)
        {
            var map = new byte[per];
            var probs = new float[per];
            TensorPrimitives.ConvertTruncating(classes.Slice(i * per, per), map.AsSpan());
            confidence.Slice(i * per, per).CopyTo(probs);
            maps[i] = new ClassMap(map, probs, w, h);
        }
        return maps;
    }

    private Buffers? Find(int n, int h, int w)
    {
        foreach (var b in _kept)
        {
            if (b.N == n && b.H == h && b.W == w) return b;
        }
        return null;
    }

    private void Keep(Buffers buffers)
    {
        if (_kept.Count == KeptShapes)
        {
            _kept[0].Dispose();
            _kept.RemoveAt(0);
        }
        _kept.Add(buffers);
    }

    public void Dispose()
    {
        _binding.Dispose();
        foreach (var b in _kept) b.Dispose();
        _kept.Clear();
    }

    /// <summary>Host buffers for one batch shape and the OrtValues over them (which pin them while they live).</summary>
    private sealed class Buffers : IDisposable
    {
        public Buffers(int n, int h, int w)
        {
            (N, H, W) = (n, h, w);
            Classes = new long[n * h * w];
            Confidence = new float[n * h * w];
            ClassesValue = OrtValue.CreateTensorValueFromMemory(Classes, [n, h, w]);
            ConfidenceValue = OrtValue.CreateTensorValueFromMemory(Confidence, [n, h, w]);
        }

        public int N { get; }
        public int H { get; }
        public int W { get; }
        public long[] Classes { get; }
        public float[] Confidence { get; }
        public OrtValue ClassesValue { get; }
        public OrtValue ConfidenceValue { get; }

        public void Dispose()
        {
            ClassesValue.Dispose();
            ConfidenceValue.Dispose();
        }
    }
}
