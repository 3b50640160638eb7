using System.Runtime.InteropServices;
using Google.Protobuf;
using ServeSharp.Handlers.Segmentation.Int8.Onnx;

namespace ServeSharp.Handlers.Segmentation.Fp16;

/// <summary>
/// fp32 → fp16 for <c>precision: fp16</c>, on the graph's protobuf, following what onnxconverter-common's float16
/// converter does (with keep_io_types): float initializers and Constant tensors become float16, clamped into
/// [1e-7, 1e4] in magnitude as it clamps them (fp16 flushes smaller values to zero and overflows past 65504);
/// Cast-to-float becomes Cast-to-float16; the graph's float inputs and outputs stay float with a Cast at the boundary;
/// and the operators it blocks (Resize, Upsample, Range, Min, Max, TopK, NonMaxSuppression, RoiAlign, CumSum) keep
/// running in fp32 between Casts, so their scales and ROI (float inputs that set output sizes) are never rounded.
/// Unlike it, and without ONNX's shape inference to lean on, it also leaves shape arithmetic alone: a node fed only by
/// Shape/Size outputs and constants stays as it was, and so do the constants only such nodes read. Element types are
/// propagated through the graph from its inputs and initializers; control flow (If, Loop, Scan subgraphs) is refused.
/// </summary>
internal static class Float16Converter
{
    private const int Float = (int)TensorProto.Types.DataType.Float;
    private const int Float16 = (int)TensorProto.Types.DataType.Float16;
    private const int Int64 = (int)TensorProto.Types.DataType.Int64;
    private const int Bool = (int)TensorProto.Types.DataType.Bool;

    /// <summary>Operators kept in fp32: onnxconverter-common's DEFAULT_OP_BLOCK_LIST, less its ONNX-ML operators.</summary>
    public static readonly IReadOnlySet<string> Blocked = new HashSet<string>(StringComparer.Ordinal)
    {
        "Resize", "Upsample", "Range", "Min", "Max", "TopK", "NonMaxSuppression", "RoiAlign", "CumSum",
    };

    public const float MinPositive = 1e-7f;
    public const float MaxFinite = 1e4f;

    /// <summary>The fp16 model, with the element types of its inputs and outputs unchanged.</summary>
    public static byte[] Convert(byte[] model32)
    {
        var model = ModelProto.Parser.ParseFrom(model32);
        var graph = model.Graph ?? throw new InvalidDataException("not an ONNX model: no graph");
        foreach (var node in graph.Node)
        {
            if (node.Attribute.Any(a => a.Type is AttributeProto.Types.AttributeType.Graph or AttributeProto.Types.AttributeType.Graphs))
                throw new InvalidDataException($"node '{node.Name}' ({node.OpType}) has a subgraph: fp16 conversion does not handle control flow");
        }

        var types = ElementTypes(graph);
        var constants = graph.Initializer.Select(t => t.Name).Concat(graph.Node.Where(n => n.OpType == "Constant").SelectMany(n => n.Output)).ToHashSet(StringComparer.Ordinal);
        var keep = KeptNodes(graph, constants);
        var consumers = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            foreach (var input in node.Input.Where(i => i.Length > 0))
            {
                if (!consumers.TryGetValue(input, out var list)) consumers[input] = list = [];
                list.Add(node);
            }
        }
        bool OnlyConvertedReaders(string name) => !consumers.TryGetValue(name, out var list) || list.All(n => !keep.Contains(n));

        // Which float tensors stay fp32: the graph's inputs, the outputs of kept nodes, and constants a kept node reads.
        var fp32 = new HashSet<string>(StringComparer.Ordinal);
        foreach (var input in graph.Input.Where(i => types.GetValueOrDefault(i.Name) == Float)) fp32.Add(input.Name);
        foreach (var node in keep) fp32.UnionWith(node.Output.Where(o => types.GetValueOrDefault(o) == Float));
        foreach (var tensor in graph.Initializer.Where(t => t.DataType == Float))
        {
            if (OnlyConvertedReaders(tensor.Name)) ToFloat16(tensor);
            else fp32.Add(tensor.Name);
        }

        var graphOutputs = graph.Output.Where(o => types.GetValueOrDefault(o.Name) == Float && !fp32.Contains(o.Name)).Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var nodes = new List<NodeProto>(graph.Node.Count + 16);
        var casts = new Dictionary<(string, int), string>();
        foreach (var node in graph.Node)
        {
            var kept = keep.Contains(node);
            if (!kept && node.OpType == "Constant" && node.Attribute.FirstOrDefault(a => a.Name == "value") is { T.DataType: Float } value)
            {
                if (OnlyConvertedReaders(node.Output[0])) ToFloat16(value.T);
                else
                {
                    fp32.Add(node.Output[0]);
                    kept = true;
                }
            }
            for (var i = 0; i < node.Input.Count; i++)
            {
                var input = node.Input[i];
                if (input.Length == 0 || types.GetValueOrDefault(input) != Float) continue;
                // A kept node reads fp32; a converted one reads fp16: a Cast where the tensor is the other kind.
                var want = kept ? Float : Float16;
                var has = fp32.Contains(input) ? Float : Float16;
                if (want != has) node.Input[i] = Cast(input, want, nodes, casts);
            }
            if (!kept && node.OpType == "Cast" && node.Attribute.FirstOrDefault(a => a.Name == "to") is { I: Float } to) to.I = Float16;
            // A float graph output computed in fp16 is written under another name and cast back to float at the end.
            for (var o = 0; o < node.Output.Count; o++)
            {
                if (graphOutputs.Contains(node.Output[o])) node.Output[o] += "_servesharp_fp16";
            }
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (graphOutputs.Contains(node.Input[i])) node.Input[i] += "_servesharp_fp16";
            }
            nodes.Add(node);
        }
        foreach (var output in graphOutputs) nodes.Add(CastNode(output + "_servesharp_fp16", output, Float));

        graph.Node.Clear();
        graph.Node.AddRange(nodes);
        // The intermediate types it recorded are fp32's; ONNX Runtime infers them again.
        graph.ValueInfo.Clear();
        return model.ToByteArray();
    }

    /// <summary>The Cast node names this converter writes start with this (tests look for them at the boundaries).</summary>
    public const string CastPrefix = "servesharp_fp16_cast";

    private static string Cast(string input, int to, List<NodeProto> nodes, Dictionary<(string, int), string> casts)
    {
        if (casts.TryGetValue((input, to), out var existing)) return existing;
        var output = $"{input}_servesharp_{(to == Float ? "fp32" : "fp16")}";
        nodes.Add(CastNode(input, output, to));
        casts[(input, to)] = output;
        return output;
    }

    private static NodeProto CastNode(string input, string output, int to)
    {
        var node = new NodeProto { Name = $"{CastPrefix}_{output}", OpType = "Cast" };
        node.Input.Add(input);
        node.Output.Add(output);
        node.Attribute.Add(new AttributeProto { Name = "to", Type = AttributeProto.Types.AttributeType.Int, I = to });
        return node;
    }

    // Blocked operators, and shape arithmetic: a node whose inputs are all Shape/Size-derived or constant, at least
    // one of them Shape/Size-derived.
    private static HashSet<NodeProto> KeptNodes(GraphProto graph, HashSet<string> constants)
    {
        var keep = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        var shapeDerived = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            var inputs = node.Input.Where(i => i.Length > 0).ToList();
            var fromShape = node.OpType is "Shape" or "Size"
                || (inputs.Any(shapeDerived.Contains) && inputs.All(i => shapeDerived.Contains(i) || constants.Contains(i)));
            if (fromShape) shapeDerived.UnionWith(node.Output);
            if (fromShape || (string.IsNullOrEmpty(node.Domain) && Blocked.Contains(node.OpType))) keep.Add(node);
        }
        return keep;
    }

    /// <summary>Element type per tensor name, propagated in node order (ONNX graphs are topologically sorted).</summary>
    internal static Dictionary<string, int> ElementTypes(GraphProto graph)
    {
        var types = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var input in graph.Input) types[input.Name] = input.Type?.TensorType?.ElemType ?? 0;
        foreach (var tensor in graph.Initializer) types[tensor.Name] = tensor.DataType;
        foreach (var node in graph.Node)
        {
            var type = node.OpType switch
            {
                "Shape" or "Size" or "ArgMax" or "ArgMin" or "NonZero" or "NonMaxSuppression" => Int64,
                "Equal" or "Less" or "Greater" or "LessOrEqual" or "GreaterOrEqual" or "Not" or "And" or "Or" or "Xor" or "IsNaN" or "IsInf" => Bool,
                "Cast" => (int)(node.Attribute.FirstOrDefault(a => a.Name == "to")?.I ?? 0),
                "Constant" => ConstantType(node),
                "ConstantOfShape" => node.Attribute.FirstOrDefault(a => a.Name == "value")?.T?.DataType ?? Float,
                "Where" => node.Input.Count > 1 ? types.GetValueOrDefault(node.Input[1]) : 0,
                _ => node.Input.Where(i => i.Length > 0).Select(i => types.GetValueOrDefault(i)).FirstOrDefault(t => t != 0),
            };
            foreach (var output in node.Output) types[output] = type;
            // TopK's second output is its indices.
            if (node.OpType == "TopK" && node.Output.Count > 1) types[node.Output[1]] = Int64;
        }
        return types;
    }

    private static int ConstantType(NodeProto node)
    {
        foreach (var a in node.Attribute)
        {
            switch (a.Name)
            {
                case "value": return a.T?.DataType ?? 0;
                case "value_float" or "value_floats": return Float;
                case "value_int" or "value_ints": return Int64;
            }
        }
        return 0;
    }

    private static void ToFloat16(TensorProto tensor)
    {
        float[] values = tensor.FloatData.Count > 0 ? [.. tensor.FloatData] : MemoryMarshal.Cast<byte, float>(tensor.RawData.Span).ToArray();
        var halves = new Half[values.Length];
        for (var i = 0; i < values.Length; i++) halves[i] = (Half)Clamp(values[i]);
        tensor.FloatData.Clear();
        tensor.DataType = Float16;
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(halves.AsSpan()));
    }

    // onnxconverter-common's clamp: sign and finiteness kept, magnitudes moved into [MinPositive, MaxFinite]; 0, NaN and ±∞ unchanged.
    internal static float Clamp(float v)
    {
        var a = MathF.Abs(v);
        if (a > 0 && a < MinPositive) return MathF.CopySign(MinPositive, v);
        if (a > MaxFinite && float.IsFinite(v)) return MathF.CopySign(MaxFinite, v);
        return v;
    }
}
