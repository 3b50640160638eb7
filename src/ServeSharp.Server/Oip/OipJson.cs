using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using ServeSharp.Sdk;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Oip;

/// <summary>
/// OIP v2's REST body: the JSON inference request and response, with the binary tensor data extension (a JSON
/// header of <c>Inference-Header-Content-Length</c> bytes, then each binary tensor's <c>binary_data_size</c> bytes
/// in order). Tensor data is held in the binary form either way; JSON arrays are converted at this edge only.
/// </summary>
internal static class OipJson
{
    public const string HeaderLengthHeader = "Inference-Header-Content-Length";

    /// <summary>Reads a request; <paramref name="headerLength"/> is the binary extension's JSON length (null: all JSON).</summary>
    public static (OipRequest Request, bool BinaryOutputs) ReadRequest(ReadOnlyMemory<byte> body, int? headerLength)
    {
        if (headerLength is < 0 || headerLength > body.Length)
            throw new BadRequestException($"{HeaderLengthHeader} is {headerLength}, but the body has {body.Length} bytes");
        var json = headerLength is { } n ? body[..n] : body;
        var binary = headerLength is { } m ? body[m..] : ReadOnlyMemory<byte>.Empty;
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new BadRequestException("the inference request must be a JSON object");
            var parameters = Parameters(root);
            var binaryOutputs = parameters.TryGetValue("binary_data_output", out var all) && all == "true";

            var inputs = new List<OipInput>();
            if (!root.TryGetProperty("inputs", out var inputArray) || inputArray.ValueKind != JsonValueKind.Array)
                throw new BadRequestException("the inference request needs an 'inputs' array");
            foreach (var input in inputArray.EnumerateArray())
            {
                var name = RequiredString(input, "name", "an input");
                var datatype = RequiredString(input, "datatype", $"input '{name}'");
                if (!input.TryGetProperty("shape", out var shapeJson) || shapeJson.ValueKind != JsonValueKind.Array)
                    throw new BadRequestException($"input '{name}' needs a 'shape' array");
                var shape = shapeJson.EnumerateArray().Select(d => d.TryGetInt64(out var v) ? v : throw new BadRequestException($"input '{name}': the shape must hold integers")).ToArray();
                var inputParameters = Parameters(input);
                if (inputParameters.TryGetValue("binary_data_size", out var sizeText))
                {
                    if (!int.TryParse(sizeText, out var size) || size < 0 || size > binary.Length)
                        throw new BadRequestException($"input '{name}': binary_data_size {sizeText} runs past the end of the body");
                    inputs.Add(new OipInput(name, datatype, shape, binary[..size], BytesAreText: false));
                    binary = binary[size..];
                }
                else
                {
                    if (!input.TryGetProperty("data", out var data)) throw new BadRequestException($"input '{name}' has neither 'data' nor parameters.binary_data_size");
                    inputs.Add(new OipInput(name, datatype, shape, ToBinary(data, datatype, name), BytesAreText: true));
                }
            }
            if (!binary.IsEmpty) throw new BadRequestException($"{binary.Length} bytes of binary data follow the inputs' binary_data_size");

            List<OipRequestedOutput>? outputs = null;
            if (root.TryGetProperty("outputs", out var outputArray) && outputArray.ValueKind == JsonValueKind.Array)
            {
                outputs = [];
                foreach (var output in outputArray.EnumerateArray())
                {
                    var p = Parameters(output);
                    outputs.Add(new OipRequestedOutput(RequiredString(output, "name", "an output"), p.TryGetValue("binary_data", out var b) ? b == "true" : binaryOutputs));
                }
            }
            var id = root.TryGetProperty("id", out var idJson) && idJson.ValueKind == JsonValueKind.String ? idJson.GetString() : null;
            return (new OipRequest(id, inputs, outputs, parameters), binaryOutputs);
        }
        catch (JsonException e)
        {
            throw new BadRequestException($"the inference request is not valid JSON: {e.Message}");
        }
    }

    private static string RequiredString(JsonElement e, string property, string what) =>
        e.TryGetProperty(property, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new BadRequestException($"{what} needs a string '{property}'");

    // Parameters as text: strings as they are, booleans as true/false, numbers as written.
    private static Dictionary<string, string> Parameters(JsonElement e)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!e.TryGetProperty("parameters", out var p) || p.ValueKind != JsonValueKind.Object) return result;
        foreach (var property in p.EnumerateObject())
        {
            result[property.Name] = property.Value.ValueKind switch
            {
                JsonValueKind.String => property.Value.GetString()!,
                JsonValueKind.True => "true",
                JsonValueKind.False => "false",
                _ => property.Value.GetRawText(),
            };
        }
        return result;
    }

    /// <summary>A JSON data array (flat or nested, row-major) in the binary form.</summary>
    private static ReadOnlyMemory<byte> ToBinary(JsonElement data, string datatype, string name)
    {
        var values = new List<JsonElement>();
        Flatten(data, values);
        if (datatype == "BYTES")
        {
            return Tensor.PackBytes(values.Select(v => v.ValueKind == JsonValueKind.String
                ? (ReadOnlyMemory<byte>)Encoding.UTF8.GetBytes(v.GetString()!)
                : throw new BadRequestException($"input '{name}': BYTES data must be strings")).ToList());
        }
        int size;
        try
        {
            size = Tensor.ElementSize(datatype);
        }
        catch (FormatException e)
        {
            throw new BadRequestException($"input '{name}': {e.Message}");
        }
        var bytes = new byte[values.Count * size];
        for (var i = 0; i < values.Count; i++)
        {
            var v = values[i];
            var at = bytes.AsSpan(i * size);
            var ok = datatype switch
            {
                "BOOL" => v.ValueKind is JsonValueKind.True or JsonValueKind.False && Put(at, v.ValueKind == JsonValueKind.True ? (byte)1 : (byte)0),
                "UINT8" => v.TryGetByte(out var u8) && Put(at, u8),
                "INT8" => v.TryGetSByte(out var i8) && Put(at, (byte)i8),
                "UINT16" => v.TryGetUInt16(out var u16) && Write(at, u16, BinaryPrimitives.WriteUInt16LittleEndian),
                "INT16" => v.TryGetInt16(out var i16) && Write(at, i16, BinaryPrimitives.WriteInt16LittleEndian),
                "UINT32" => v.TryGetUInt32(out var u32) && Write(at, u32, BinaryPrimitives.WriteUInt32LittleEndian),
                "INT32" => v.TryGetInt32(out var i32) && Write(at, i32, BinaryPrimitives.WriteInt32LittleEndian),
                "UINT64" => v.TryGetUInt64(out var u64) && Write(at, u64, BinaryPrimitives.WriteUInt64LittleEndian),
                "INT64" => v.TryGetInt64(out var i64) && Write(at, i64, BinaryPrimitives.WriteInt64LittleEndian),
                "FP32" => v.ValueKind == JsonValueKind.Number && Write(at, v.GetSingle(), BinaryPrimitives.WriteSingleLittleEndian),
                "FP64" => v.TryGetDouble(out var f64) && Write(at, f64, BinaryPrimitives.WriteDoubleLittleEndian),
                _ => throw new BadRequestException($"input '{name}': {datatype} data cannot be sent as JSON; send it as binary data"),
            };
            if (!ok) throw new BadRequestException($"input '{name}': element {i} ({v.GetRawText()}) is not a {datatype} value");
        }
        return bytes;
    }

    private static bool Put(Span<byte> at, byte value)
    {
        at[0] = value;
        return true;
    }

    private static bool Write<T>(Span<byte> at, T value, SpanAction<T> write)
    {
        write(at, value);
        return true;
    }

    private delegate void SpanAction<in T>(Span<byte> destination, T value);

    private static void Flatten(JsonElement e, List<JsonElement> into)
    {
        if (e.ValueKind != JsonValueKind.Array)
        {
            into.Add(e);
            return;
        }
        foreach (var item in e.EnumerateArray()) Flatten(item, into);
    }

    /// <summary>Writes the response: JSON, then the binary data of the outputs that go binary. Returns the JSON's length.</summary>
    public static int WriteResponse(IBufferWriter<byte> body, OipResponse response, Func<string, bool> binary)
    {
        var counter = new CountingWriter(body);
        var tails = new List<ReadOnlyMemory<byte>>();
        using (var json = new Utf8JsonWriter(counter))
        {
            json.WriteStartObject();
            json.WriteString("model_name", response.ModelName);
            json.WriteString("model_version", response.ModelVersion);
            if (response.Id is not null) json.WriteString("id", response.Id);
            json.WriteStartArray("outputs");
            foreach (var t in response.Outputs)
            {
                json.WriteStartObject();
                json.WriteString("name", t.Name);
                json.WriteString("datatype", t.Datatype);
                json.WriteStartArray("shape");
                foreach (var d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                if (binary(t.Name))
                {
                    json.WriteStartObject("parameters");
                    json.WriteNumber("binary_data_size", t.Data.Length);
                    json.WriteEndObject();
                    tails.Add(t.Data);
                }
                else
                {
                    WriteData(json, t);
                }
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        var headerLength = counter.Written;
        foreach (var tail in tails) body.Write(tail.Span);
        return headerLength;
    }

    private static void WriteData(Utf8JsonWriter json, Tensor t)
    {
        var d = t.Data.Span;
        if (t.Datatype == "BYTES")
        {
            var elements = Tensor.UnpackBytes(t.Data);
            // Strings where the bytes are text; base64 (and says so, as MLServer's content_type does) where they are not.
            var text = elements.TrueForAll(e => System.Text.Unicode.Utf8.IsValid(e.Span));
            if (!text)
            {
                json.WriteStartObject("parameters");
                json.WriteString("content_type", "base64");
                json.WriteEndObject();
            }
            json.WriteStartArray("data");
            foreach (var e in elements)
            {
                if (text) json.WriteStringValue(e.Span);
                else json.WriteBase64StringValue(e.Span);
            }
            json.WriteEndArray();
            return;
        }
        json.WriteStartArray("data");
        var size = Tensor.ElementSize(t.Datatype);
        for (var at = 0; at + size <= d.Length; at += size)
        {
            var v = d[at..];
            switch (t.Datatype)
            {
                case "BOOL": json.WriteBooleanValue(v[0] != 0); break;
                case "UINT8": json.WriteNumberValue(v[0]); break;
                case "INT8": json.WriteNumberValue((sbyte)v[0]); break;
                case "UINT16": json.WriteNumberValue(BinaryPrimitives.ReadUInt16LittleEndian(v)); break;
                case "INT16": json.WriteNumberValue(BinaryPrimitives.ReadInt16LittleEndian(v)); break;
                case "UINT32": json.WriteNumberValue(BinaryPrimitives.ReadUInt32LittleEndian(v)); break;
                case "INT32": json.WriteNumberValue(BinaryPrimitives.ReadInt32LittleEndian(v)); break;
                case "UINT64": json.WriteNumberValue(BinaryPrimitives.ReadUInt64LittleEndian(v)); break;
                case "INT64": json.WriteNumberValue(BinaryPrimitives.ReadInt64LittleEndian(v)); break;
                case "FP32": json.WriteNumberValue(BinaryPrimitives.ReadSingleLittleEndian(v)); break;
                case "FP64": json.WriteNumberValue(BinaryPrimitives.ReadDoubleLittleEndian(v)); break;
                default: throw new InternalServerException($"output '{t.Name}' is {t.Datatype}, which JSON cannot carry: ask for it as binary data");
            }
        }
        json.WriteEndArray();
    }

    // Counts what the JSON writer writes, so the binary extension's header length needs no second pass.
    private sealed class CountingWriter(IBufferWriter<byte> inner) : IBufferWriter<byte>
    {
        public int Written { get; private set; }

        public void Advance(int count)
        {
            Written += count;
            inner.Advance(count);
        }

        public Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

        public Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);
    }
}
