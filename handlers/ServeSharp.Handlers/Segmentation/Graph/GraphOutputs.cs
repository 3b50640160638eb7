using System.Text;

namespace ServeSharp.Handlers.Segmentation.Graph;

/// <summary>
/// The graph outputs an ONNX model declares (name, element type, rank), read from the protobuf before any session
/// exists: the handler decides from them whether to append <see cref="ClassHead"/> without opening the model twice.
/// </summary>
internal static class GraphOutputs
{
    public const int FloatType = 1;

    // ModelProto.graph (7) → GraphProto.output (12) → ValueInfoProto { name (1), type (2) } → TypeProto.tensor_type (1)
    // → { elem_type (1), shape (2) → TensorShapeProto.dim (1)* }.
    public static List<(string Name, int ElementType, int Rank)> Read(ReadOnlyMemory<byte> model)
    {
        var graph = ProtoReader.Fields(model).Where(f => f.Number == 7 && f.WireType == 2).ToList();
        if (graph.Count != 1) throw new InvalidDataException("not an ONNX model: no graph");
        var outputs = new List<(string, int, int)>();
        foreach (var output in ProtoReader.Fields(graph[0].Payload).Where(f => f.Number == 12 && f.WireType == 2))
        {
            string name = "";
            int type = 0, rank = -1;
            foreach (var field in ProtoReader.Fields(output.Payload))
            {
                if (field.Number == 1) name = Encoding.UTF8.GetString(field.Payload.Span);
                if (field.Number != 2 || field.WireType != 2) continue;
                foreach (var tensor in ProtoReader.Fields(field.Payload).Where(f => f.Number == 1 && f.WireType == 2))
                {
                    foreach (var part in ProtoReader.Fields(tensor.Payload))
                    {
                        if (part.Number == 1 && part.WireType == 0) type = (int)part.Value;
                        if (part.Number == 2 && part.WireType == 2) rank = ProtoReader.Fields(part.Payload).Count(d => d.Number == 1);
                    }
                }
            }
            outputs.Add((name, type, rank));
        }
        return outputs;
    }

    /// <summary>
    /// Whether an initializer keeps its data in a file beside the model (TensorProto.data_location (14) = EXTERNAL): such
    /// a model cannot be opened from memory, where ONNX Runtime has no folder to find that file in.
    /// </summary>
    public static bool UsesExternalData(ReadOnlyMemory<byte> model)
    {
        var graph = ProtoReader.Fields(model).Where(f => f.Number == 7 && f.WireType == 2).ToList();
        if (graph.Count != 1) throw new InvalidDataException("not an ONNX model: no graph");
        foreach (var initializer in ProtoReader.Fields(graph[0].Payload).Where(f => f.Number == 5 && f.WireType == 2))
        {
            if (ProtoReader.Fields(initializer.Payload).Any(f => f.Number == 14 && f.WireType == 0 && f.Value == 1)) return true;
        }
        return false;
    }

    /// <summary>The output <see cref="SegmentationModel"/> would read ("out", else the first) when it is float N×C×H×W logits.</summary>
    public static string? Logits(ReadOnlyMemory<byte> model)
    {
        var outputs = Read(model);
        if (outputs.Count == 0) return null;
        var chosen = outputs.FindIndex(o => o.Name == "out") is >= 0 and var i ? outputs[i] : outputs[0];
        return chosen is { ElementType: FloatType, Rank: 4 } ? chosen.Name : null;
    }
}
