using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// The outputs of one ONNX Runtime run, shared by the images of a batch: each image's result reads its logits in
/// place, inside ONNX Runtime's own buffer, and holds a lease; the last lease released frees the buffer.
/// </summary>
internal sealed class SharedOutputs
{
    private readonly IDisposableReadOnlyCollection<OrtValue> _values;
    private int _leases;

    public SharedOutputs(IDisposableReadOnlyCollection<OrtValue> values, int leases)
    {
        _values = values;
        _leases = leases;
    }

    /// <summary>The first output's float data, as memory (valid until the last lease is released).</summary>
    public unsafe ReadOnlyMemory<float> Floats()
    {
        var span = _values[0].GetTensorMutableDataAsSpan<float>();
        // ONNX Runtime's buffers are native: they do not move, so the address stays valid while the value lives.
        return new NativeFloats((float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(span)), span.Length).Memory;
    }

    public IReadOnlyList<long> Shape => _values[0].GetTensorTypeAndShape().Shape;

    /// <summary>One image's share; disposing it more than once releases once.</summary>
    public IDisposable Lease() => new LeaseOf(this);

    private void Release()
    {
        if (Interlocked.Decrement(ref _leases) == 0) _values.Dispose();
    }

    private sealed class LeaseOf(SharedOutputs owner) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) owner.Release();
        }
    }

    private sealed unsafe class NativeFloats(float* pointer, int length) : MemoryManager<float>
    {
        public override Span<float> GetSpan() => new(pointer, length);

        public override MemoryHandle Pin(int elementIndex = 0) => new(pointer + elementIndex);

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
