using System.Buffers;
using System.Text;

namespace ServeSharp.Handlers.Segmentation.Graph;

/// <summary>
/// Just enough of protobuf's wire format to edit an ONNX model without its generated classes: walk a message's
/// top-level fields (copying the ones we keep byte for byte) and write new fields. Protobuf lets repeated fields
/// appear anywhere in a message, so appending nodes, outputs and initializers to a graph is appending bytes.
/// </summary>
internal sealed class ProtoWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new();

    public ReadOnlyMemory<byte> Written => _buffer.WrittenMemory;

    public ProtoWriter Varint(int field, long value)
    {
        Tag(field, 0);
        Raw((ulong)value);
        return this;
    }

    public ProtoWriter Bytes(int field, ReadOnlySpan<byte> value)
    {
        Tag(field, 2);
        Raw((ulong)value.Length);
        _buffer.Write(value);
        return this;
    }

    public ProtoWriter String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    public ProtoWriter Message(int field, ProtoWriter message) => Bytes(field, message.Written.Span);

    /// <summary>A field exactly as it was read (tag and payload).</summary>
    public ProtoWriter Copy(ReadOnlySpan<byte> field)
    {
        _buffer.Write(field);
        return this;
    }

    private void Tag(int field, int wireType) => Raw(((ulong)field << 3) | (uint)wireType);

    private void Raw(ulong value)
    {
        var span = _buffer.GetSpan(10);
        var n = 0;
        while (value >= 0x80)
        {
            span[n++] = (byte)(value | 0x80);
            value >>= 7;
        }
        span[n++] = (byte)value;
        _buffer.Advance(n);
    }
}

/// <summary>One top-level field of a message: its number, its whole encoding, and (for length-delimited fields) its payload or (varints) its value.</summary>
internal readonly record struct ProtoField(int Number, int WireType, ReadOnlyMemory<byte> Whole, ReadOnlyMemory<byte> Payload, ulong Value);

internal static class ProtoReader
{
    /// <summary>The message's top-level fields in order. Throws <see cref="InvalidDataException"/> on a malformed message.</summary>
    public static List<ProtoField> Fields(ReadOnlyMemory<byte> message)
    {
        var fields = new List<ProtoField>();
        var span = message.Span;
        var at = 0;
        while (at < span.Length)
        {
            var start = at;
            var tag = Varint(span, ref at);
            var (number, wire) = ((int)(tag >> 3), (int)(tag & 7));
            ReadOnlyMemory<byte> payload = default;
            ulong value = 0;
            switch (wire)
            {
                case 0: value = Varint(span, ref at); break;
                case 1: at = Skip(span, at, 8); break;
                case 5: at = Skip(span, at, 4); break;
                case 2:
                    var length = Varint(span, ref at);
                    if (length > (ulong)(span.Length - at)) throw new InvalidDataException("a length-delimited field runs past the end of its message");
                    payload = message.Slice(at, (int)length);
                    at += (int)length;
                    break;
                default: throw new InvalidDataException($"unsupported protobuf wire type {wire}");
            }
            fields.Add(new ProtoField(number, wire, message[start..at], payload, value));
        }
        return fields;
    }

    private static int Skip(ReadOnlySpan<byte> span, int at, int n) =>
        at + n <= span.Length ? at + n : throw new InvalidDataException("a fixed-width field runs past the end of its message");

    private static ulong Varint(ReadOnlySpan<byte> span, ref int at)
    {
        ulong value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            if (at >= span.Length) throw new InvalidDataException("a varint runs past the end of its message");
            var b = span[at++];
            value |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80) return value;
        }
        throw new InvalidDataException("a varint is longer than 10 bytes");
    }
}
