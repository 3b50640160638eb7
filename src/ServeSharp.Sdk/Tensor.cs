using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace ServeSharp.Sdk;

/// <summary>
/// A named tensor as the Open Inference Protocol (KServe v2) names it: a datatype (<c>UINT8</c>, <c>INT64</c>,
/// <c>FP32</c>, <c>BYTES</c>...), a shape, and its elements row-major, little-endian (<c>BYTES</c> elements each
/// prefixed with their 4-byte length, as the protocol's binary form holds them).
/// <para>
/// Tensor inputs reach a handler as a request parameter whose content type is <see cref="InputContentType"/>
/// (read it back with <see cref="TryFromParameter"/>). A handler answers with tensors through <see cref="Output"/>;
/// the server then gives them to OIP v2 clients as they are, and to other clients as the handler's body.
/// </para>
/// </summary>
public sealed record Tensor(string Name, string Datatype, long[] Shape, ReadOnlyMemory<byte> Data)
{
    /// <summary>The content type of a handler output that holds tensors (<see cref="Output"/>).</summary>
    public const string OutputContentType = "application/vnd.servesharp.tensors";

    private const string InputMediaType = "application/vnd.servesharp.tensor";

    /// <summary>The request parameter <c>outputs</c> the server sets to the output names an OIP v2 client asked for (comma-separated).</summary>
    public const string RequestedOutputsParameter = "outputs";

    /// <summary>Bytes per element, or 0 for <c>BYTES</c> (variable); throws for a datatype the protocol does not define.</summary>
    public static int ElementSize(string datatype) => datatype switch
    {
        "BOOL" or "UINT8" or "INT8" => 1,
        "UINT16" or "INT16" or "FP16" or "BF16" => 2,
        "UINT32" or "INT32" or "FP32" => 4,
        "UINT64" or "INT64" or "FP64" => 8,
        "BYTES" => 0,
        _ => throw new FormatException($"'{datatype}' is not a datatype of the Open Inference Protocol"),
    };

    /// <summary>The number of elements the shape holds (1 for a scalar); throws on a negative dimension or overflow.</summary>
    public static long ElementCount(IReadOnlyList<long> shape)
    {
        long n = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new FormatException($"shape [{string.Join(", ", shape)}] has a negative dimension");
            n = checked(n * d);
        }
        return n;
    }

    /// <summary>The content type that marks a request parameter as this tensor: <c>...; datatype=UINT8; shape=480,640,3</c>.</summary>
    public string InputContentType() =>
        $"{InputMediaType}; datatype={Datatype}; shape={string.Join(',', Shape.Select(d => d.ToString(CultureInfo.InvariantCulture)))}";

    /// <summary>Reads a tensor input back from its request parameter; false for any other parameter.</summary>
    public static bool TryFromParameter(RequestParameter parameter, out Tensor tensor)
    {
        tensor = null!;
        var type = parameter.ContentType;
        if (type is null || !type.StartsWith(InputMediaType + ";", StringComparison.Ordinal)) return false;
        string? datatype = null;
        long[]? shape = null;
        foreach (var part in type[(InputMediaType.Length + 1)..].Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (part.StartsWith("datatype=", StringComparison.Ordinal)) datatype = part[9..];
            else if (part.StartsWith("shape=", StringComparison.Ordinal))
                shape = part.Length == 6 ? [] : part[6..].Split(',').Select(d => long.Parse(d, CultureInfo.InvariantCulture)).ToArray();
        }
        if (datatype is null || shape is null) return false;
        tensor = new Tensor(parameter.Name, datatype, shape, parameter.Value);
        return true;
    }

    /// <summary>A handler output holding these tensors (for one request).</summary>
    public static HandlerOutput Output(IReadOnlyList<Tensor> tensors)
    {
        // Layout: 4-byte little-endian length of a JSON header, the header ([{name, datatype, shape, size}]), the data.
        using var header = new MemoryStream();
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartArray();
            foreach (var t in tensors)
            {
                json.WriteStartObject();
                json.WriteString("name", t.Name);
                json.WriteString("datatype", t.Datatype);
                json.WriteStartArray("shape");
                foreach (var d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteNumber("size", t.Data.Length);
                json.WriteEndObject();
            }
            json.WriteEndArray();
        }
        var body = new byte[4 + header.Length + tensors.Sum(t => (long)t.Data.Length)];
        BinaryPrimitives.WriteInt32LittleEndian(body, (int)header.Length);
        header.GetBuffer().AsSpan(0, (int)header.Length).CopyTo(body.AsSpan(4));
        var at = 4 + (int)header.Length;
        foreach (var t in tensors)
        {
            t.Data.Span.CopyTo(body.AsSpan(at));
            at += t.Data.Length;
        }
        return new HandlerOutput(body, OutputContentType);
    }

    /// <summary>Reads the tensors of an <see cref="Output"/> body (the data slices the body, no copies); throws FormatException when it is not one.</summary>
    public static IReadOnlyList<Tensor> ReadOutput(ReadOnlyMemory<byte> body)
    {
        if (body.Length < 4) throw new FormatException("the tensor output is shorter than its header length");
        var headerLength = BinaryPrimitives.ReadInt32LittleEndian(body.Span);
        if (headerLength < 2 || headerLength > body.Length - 4) throw new FormatException("the tensor output's header length is out of range");
        var tensors = new List<Tensor>();
        var at = 4 + headerLength;
        try
        {
            using var doc = JsonDocument.Parse(body.Slice(4, headerLength));
            foreach (var t in doc.RootElement.EnumerateArray())
            {
                var size = t.GetProperty("size").GetInt32();
                if (size < 0 || size > body.Length - at) throw new FormatException("a tensor's data runs past the end of the output");
                var shape = t.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                tensors.Add(new Tensor(t.GetProperty("name").GetString()!, t.GetProperty("datatype").GetString()!, shape, body.Slice(at, size)));
                at += size;
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new FormatException($"the tensor output's header is malformed: {e.Message}", e);
        }
        return tensors;
    }

    /// <summary><c>BYTES</c> elements in the protocol's binary form (each prefixed with its 4-byte little-endian length).</summary>
    public static byte[] PackBytes(IReadOnlyList<ReadOnlyMemory<byte>> elements)
    {
        var packed = new byte[elements.Sum(e => 4L + e.Length)];
        var at = 0;
        foreach (var e in elements)
        {
            BinaryPrimitives.WriteInt32LittleEndian(packed.AsSpan(at), e.Length);
            e.Span.CopyTo(packed.AsSpan(at + 4));
            at += 4 + e.Length;
        }
        return packed;
    }

    /// <summary>The elements of <c>BYTES</c> data in the protocol's binary form; throws FormatException when a length runs past the end.</summary>
    public static List<ReadOnlyMemory<byte>> UnpackBytes(ReadOnlyMemory<byte> packed)
    {
        var elements = new List<ReadOnlyMemory<byte>>();
        var at = 0;
        while (at < packed.Length)
        {
            if (packed.Length - at < 4) throw new FormatException("BYTES data ends inside an element's length");
            var n = BinaryPrimitives.ReadInt32LittleEndian(packed.Span[at..]);
            if (n < 0 || n > packed.Length - at - 4) throw new FormatException("a BYTES element's length runs past the end of the data");
            elements.Add(packed.Slice(at + 4, n));
            at += 4 + n;
        }
        return elements;
    }

    /// <summary>A one-element <c>BYTES</c> tensor holding UTF-8 text.</summary>
    public static Tensor Text(string name, string text) => new(name, "BYTES", [1], PackBytes([Encoding.UTF8.GetBytes(text)]));
}

/// <summary>A tensor a model takes or gives, as OIP v2 metadata announces it (-1 for a dimension of any size).</summary>
public sealed record TensorSpec(string Name, string Datatype, long[] Shape);
