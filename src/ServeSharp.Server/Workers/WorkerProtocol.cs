using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace ServeSharp.Server.Workers;

/// <summary>
/// The frames between the server and a worker process over their Unix domain socket. Every frame is a 4-byte
/// little-endian payload length, a 1-byte <see cref="FrameType"/>, then the payload: int32/int64 numbers,
/// strings and byte blocks as an int32 length (−1 for null) and their bytes.
/// </summary>
internal enum FrameType : byte
{
    /// <summary>Worker → server, first: the start token (proves it is the child we started) and its pid.</summary>
    Hello = 1,
    /// <summary>Server → worker: what to load (<see cref="WorkerLoad"/> as JSON).</summary>
    Load = 2,
    /// <summary>Worker → server: loaded (empty error) or why not.</summary>
    Loaded = 3,
    /// <summary>Server → worker: a batch id and its requests.</summary>
    Batch = 4,
    /// <summary>Worker → server: a batch id and one response per request.</summary>
    Result = 5,
    /// <summary>Worker → server: the handler threw for the whole batch.</summary>
    BatchFailed = 6,
    /// <summary>Worker → server: the handler honoured a cancel.</summary>
    Cancelled = 7,
    /// <summary>Server → worker: cancel the batch's token (every client left).</summary>
    Cancel = 8,
    Ping = 9,
    Pong = 10,
    /// <summary>Server → worker: finish the batch in hand, dispose the handler, exit.</summary>
    Stop = 11,
}

internal static class WorkerProtocol
{
    public const int HeaderSize = 5;

    /// <summary>No frame may claim more: a corrupt or hostile length is a protocol error, not an allocation.</summary>
    public const int MaxPayload = 1 << 30;

    /// <summary>Reads one frame; null at a clean end of stream. Throws <see cref="InvalidDataException"/> on a bad header.</summary>
    public static async Task<(FrameType Type, byte[] Payload)?> ReadAsync(Stream stream, byte[] header, CancellationToken cancellationToken, int maxPayload = MaxPayload)
    {
        if (!await FillAsync(stream, header.AsMemory(0, HeaderSize), cancellationToken)) return null;
        var length = BinaryPrimitives.ReadInt32LittleEndian(header);
        if (length < 0 || length > maxPayload) throw new InvalidDataException($"frame length {length} is out of range");
        var payload = length == 0 ? [] : new byte[length];
        if (!await FillAsync(stream, payload, cancellationToken)) throw new InvalidDataException("the stream ended inside a frame");
        return ((FrameType)header[4], payload);
    }

    private static async Task<bool> FillAsync(Stream stream, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer[read..], cancellationToken);
            if (n == 0)
            {
                if (read == 0) return false;
                throw new InvalidDataException("the stream ended inside a frame");
            }
            read += n;
        }
        return true;
    }
}

/// <summary>Builds one frame in a growing buffer; <see cref="Finish"/> patches the length in.</summary>
internal sealed class FrameBuilder
{
    private readonly ArrayBufferWriter<byte> _buffer = new(4096);

    public FrameBuilder Begin(FrameType type)
    {
        _buffer.ResetWrittenCount();
        var header = _buffer.GetSpan(WorkerProtocol.HeaderSize);
        header[4] = (byte)type;
        _buffer.Advance(WorkerProtocol.HeaderSize);
        return this;
    }

    public void Int32(int value)
    {
        BinaryPrimitives.WriteInt32LittleEndian(_buffer.GetSpan(4), value);
        _buffer.Advance(4);
    }

    public void Int64(long value)
    {
        BinaryPrimitives.WriteInt64LittleEndian(_buffer.GetSpan(8), value);
        _buffer.Advance(8);
    }

    public void String(string? value)
    {
        if (value is null)
        {
            Int32(-1);
            return;
        }
        var span = _buffer.GetSpan(4 + Encoding.UTF8.GetMaxByteCount(value.Length));
        var n = Encoding.UTF8.GetBytes(value, span[4..]);
        BinaryPrimitives.WriteInt32LittleEndian(span, n);
        _buffer.Advance(4 + n);
    }

    public void Bytes(ReadOnlySpan<byte> value)
    {
        Int32(value.Length);
        _buffer.Write(value);
    }

    /// <summary>The whole frame, valid until the next <see cref="Begin"/>.</summary>
    public ReadOnlyMemory<byte> Finish()
    {
        var length = _buffer.WrittenCount - WorkerProtocol.HeaderSize;
        if (length > WorkerProtocol.MaxPayload) throw new InvalidOperationException($"a frame of {length} bytes is over the protocol's limit");
        var written = _buffer.WrittenMemory;
        BinaryPrimitives.WriteInt32LittleEndian(System.Runtime.InteropServices.MemoryMarshal.AsMemory(written).Span, length);
        return written;
    }
}

/// <summary>Reads a frame's payload in order; bodies come back as slices of the payload, not copies.</summary>
internal struct FrameReader(byte[] payload)
{
    private int _position;

    public int Int32()
    {
        var v = BinaryPrimitives.ReadInt32LittleEndian(Take(4).Span);
        return v;
    }

    public long Int64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8).Span);

    public string? String()
    {
        var n = Int32();
        if (n == -1) return null;
        return Encoding.UTF8.GetString(Take(n).Span);
    }

    public ReadOnlyMemory<byte> Bytes() => Take(Int32());

    /// <summary>A count of items that follow, checked against what is left so a corrupt count cannot allocate.</summary>
    public int Count(int minBytesEach)
    {
        var n = Int32();
        if (n < 0 || (long)n * Math.Max(1, minBytesEach) > payload.Length - _position) throw new InvalidDataException($"item count {n} does not fit the frame");
        return n;
    }

    private ReadOnlyMemory<byte> Take(int n)
    {
        if (n < 0 || n > payload.Length - _position) throw new InvalidDataException("a field runs past the end of its frame");
        var slice = payload.AsMemory(_position, n);
        _position += n;
        return slice;
    }
}
