namespace ServeSharp.Handlers.Segmentation.Graph;

/// <summary>
/// Appends to a segmentation model the two per-pixel answers the handler needs, so a GPU run copies back H×W values
/// instead of C×H×W logits: <see cref="Classes"/> (int64 N×H×W: ArgMax over the class axis, the first class with
/// the largest score, as torch.max picks) and <see cref="Confidence"/> (float N×H×W: that class's softmax
/// probability, 1 / Σₖ exp(sₖ − max), the formula <see cref="Argmax"/> uses on CPU). The original outputs stay.
/// Operators are written for the model's own opset (the axes of ReduceMax and ReduceSum moved from attribute to
/// input in opsets 18 and 13).
/// </summary>
internal static class ClassHead
{
    public const string Classes = "servesharp_classes";
    public const string Confidence = "servesharp_confidence";
    private const string Axis = "servesharp_axis1";

    // ONNX field numbers (onnx.proto): ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto.
    private const int ModelOpsetImport = 8, ModelGraph = 7;
    private const int GraphNode = 1, GraphInitializer = 5, GraphOutput = 12;
    private const int NodeInput = 1, NodeOutput = 2, NodeName = 3, NodeOpType = 4, NodeAttribute = 5;
    private const int AttributeName = 1, AttributeI = 3, AttributeInts = 8, AttributeType = 20, AttributeTypeInt = 2, AttributeTypeInts = 7;
    private const int TensorDims = 1, TensorDataType = 2, TensorInt64Data = 7, TensorName = 8, Int64 = 7, Float = 1;

    /// <summary>The model with the head appended after <paramref name="logits"/> (an N×C×H×W float output).</summary>
    public static byte[] Append(ReadOnlyMemory<byte> model, string logits)
    {
        var fields = ProtoReader.Fields(model);
        var opset = Opset(fields);
        var graph = fields.Where(f => f.Number == ModelGraph && f.WireType == 2).ToList();
        if (graph.Count != 1) throw new InvalidDataException("not an ONNX model: no graph");

        var g = new ProtoWriter().Copy(graph[0].Payload.Span);
        g.Message(GraphNode, Node("ArgMax", [logits], [Classes], Int("axis", 1), Int("keepdims", 0)));
        g.Message(GraphNode, Reduce("ReduceMax", logits, "servesharp_max", keepDims: 1, axesAsInput: opset >= 18));
        g.Message(GraphNode, Node("Sub", [logits, "servesharp_max"], ["servesharp_shifted"]));
        g.Message(GraphNode, Node("Exp", ["servesharp_shifted"], ["servesharp_exp"]));
        g.Message(GraphNode, Reduce("ReduceSum", "servesharp_exp", "servesharp_sum", keepDims: 0, axesAsInput: opset >= 13));
        g.Message(GraphNode, Node("Reciprocal", ["servesharp_sum"], [Confidence]));
        if (opset >= 13)
            g.Message(GraphInitializer, new ProtoWriter().Varint(TensorDims, 1).Varint(TensorDataType, Int64).Varint(TensorInt64Data, 1).String(TensorName, Axis));
        g.Message(GraphOutput, Output(Classes, Int64));
        g.Message(GraphOutput, Output(Confidence, Float));

        var m = new ProtoWriter();
        foreach (var f in fields)
        {
            if (f.Number == ModelGraph) m.Message(ModelGraph, g);
            else m.Copy(f.Whole.Span);
        }
        return m.Written.ToArray();
    }

    // The default domain's version ("" or "ai.onnx"); ONNX models name it in opset_import.
    private static long Opset(List<ProtoField> model)
    {
        foreach (var import in model.Where(f => f.Number == ModelOpsetImport && f.WireType == 2))
        {
            var parts = ProtoReader.Fields(import.Payload);
            var domain = parts.FirstOrDefault(p => p.Number == 1).Payload;
            var isDefault = domain.Length == 0 || System.Text.Encoding.UTF8.GetString(domain.Span) == "ai.onnx";
            if (isDefault && parts.FirstOrDefault(p => p.Number == 2) is { WireType: 0 } version) return (long)version.Value;
        }
        throw new InvalidDataException("the model names no opset for the default ONNX domain");
    }

    private static ProtoWriter Reduce(string op, string input, string output, int keepDims, bool axesAsInput) => axesAsInput
        ? Node(op, [input, Axis], [output], Int("keepdims", keepDims))
        : Node(op, [input], [output], Int("keepdims", keepDims), new ProtoWriter().String(AttributeName, "axes").Varint(AttributeType, AttributeTypeInts).Varint(AttributeInts, 1));

    private static ProtoWriter Node(string op, string[] inputs, string[] outputs, params ProtoWriter[] attributes)
    {
        var node = new ProtoWriter();
        foreach (var i in inputs) node.String(NodeInput, i);
        foreach (var o in outputs) node.String(NodeOutput, o);
        node.String(NodeName, $"servesharp_{op}_{outputs[0]}").String(NodeOpType, op);
        foreach (var a in attributes) node.Message(NodeAttribute, a);
        return node;
    }

    private static ProtoWriter Int(string name, long value) =>
        new ProtoWriter().String(AttributeName, name).Varint(AttributeType, AttributeTypeInt).Varint(AttributeI, value);

    // ValueInfoProto { name, type: TypeProto { tensor_type: { elem_type } } }; the shape is left to ONNX Runtime.
    private static ProtoWriter Output(string name, int elementType) =>
        new ProtoWriter().String(1, name).Message(2, new ProtoWriter().Message(1, new ProtoWriter().Varint(1, elementType)));
}
