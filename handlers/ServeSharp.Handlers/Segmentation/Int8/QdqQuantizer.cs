using Google.Protobuf;
using ServeSharp.Handlers.Segmentation.Int8.Onnx;

namespace ServeSharp.Handlers.Segmentation.Int8;

/// <summary>An activation's calibrated range (min and max over every calibration image).</summary>
internal readonly record struct TensorRange(float Min, float Max);

/// <summary>
/// Static QDQ quantization, in the format ONNX Runtime's quantize_static writes (QuantFormat.QDQ): every Conv whose
/// weight is an initializer reads DequantizeLinear(QuantizeLinear(x)) for its input, int8 weights (symmetric, per
/// output channel, DequantizeLinear axis 0) and int32 bias (scale = input scale × weight scale), and its output goes
/// through QuantizeLinear/DequantizeLinear too. ONNX Runtime's CPU provider fuses each DQ → Conv → Q into one
/// QLinearConv (u8s8, VNNI where the CPU has it). Activations are uint8, asymmetric, per tensor, from calibrated
/// ranges. A Relu that is a Conv's only consumer is folded into the Conv's output range (its zero point is then 0,
/// so quantizing clamps exactly as Relu does), as ONNX Runtime's quantizer does. Graph outputs stay float.
/// </summary>
internal static class QdqQuantizer
{
    private const int Float = (int)TensorProto.Types.DataType.Float;

    /// <summary>What quantization will touch: the Convs, and the activations whose ranges calibration must measure.</summary>
    /// <param name="Original">The model as given: calibration runs it (a folded Relu must still clamp there).</param>
    /// <param name="Model">The model with Identity-shared initializers and Conv → Relu pairs folded: the one quantized.</param>
    internal sealed record Plan(ModelProto Original, ModelProto Model, IReadOnlyList<NodeProto> Convs, IReadOnlyList<string> Activations);

    /// <summary>Reads the model and folds Conv → Relu pairs; every activation of the plan has the same name in both models.</summary>
    public static Plan Prepare(byte[] modelBytes)
    {
        var original = ModelProto.Parser.ParseFrom(modelBytes);
        var model = original.Clone();
        var graph = model.Graph ?? throw new InvalidDataException("not an ONNX model: no graph");
        var opset = model.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx")?.Version ?? 0;
        if (opset < 13)
            throw new InvalidDataException($"the model's opset is {opset}; int8 needs opset 13 or later (per-channel DequantizeLinear): export it again with opset_version=13");
        var initializers = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var graphOutputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);

        FoldIdentities(graph, initializers, graphOutputs);
        var convs = graph.Node.Where(n => n.OpType == "Conv" && string.IsNullOrEmpty(n.Domain) && n.Input.Count >= 2
            && initializers.TryGetValue(n.Input[1], out var w) && w.DataType == Float && w.Dims.Count == 4
            && (n.Input.Count < 3 || n.Input[2].Length == 0 || initializers.ContainsKey(n.Input[2]))).ToList();
        var feedsConv = FeedsConv(graph);
        // Only a Conv whose output is quantized may lose its Relu: the quantized range [0, max] does the clamping.
        FoldRelus(graph, convs.Where(c => feedsConv.Contains(c.Output[0])).ToHashSet(ReferenceEqualityComparer.Instance), graphOutputs);
        var activations = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var conv in convs)
        {
            if (seen.Add(conv.Input[0])) activations.Add(conv.Input[0]);
            // The head's output (the logits, before their resize) stays float: argmax decides on it, and no Conv after it gains.
            if (!graphOutputs.Contains(conv.Output[0]) && feedsConv.Contains(conv.Output[0]) && seen.Add(conv.Output[0])) activations.Add(conv.Output[0]);
        }
        return new Plan(original, model, convs, activations);
    }

    /// <summary>The original model with every activation of the plan added as a float graph output.</summary>
    public static byte[] WithOutputs(Plan plan)
    {
        var model = plan.Original.Clone();
        var existing = model.Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var name in plan.Activations.Where(a => !existing.Contains(a)))
            model.Graph.Output.Add(new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = Float } } });
        return model.ToByteArray();
    }

    /// <summary>The quantized model. <paramref name="ranges"/> holds every activation of the plan.</summary>
    public static byte[] Quantize(Plan plan, IReadOnlyDictionary<string, TensorRange> ranges)
    {
        var model = plan.Model.Clone();
        var graph = model.Graph;
        var initializers = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var quantized = new Dictionary<string, (float Scale, byte ZeroPoint)>(StringComparer.Ordinal);
        foreach (var name in plan.Activations)
        {
            if (!ranges.TryGetValue(name, out var r)) throw new InvalidOperationException($"no calibrated range for '{name}'");
            quantized[name] = Uint8Params(r);
        }

        var first = new List<NodeProto>();     // weight and bias DequantizeLinear nodes, and graph inputs' Q/DQ
        var after = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal); // Q/DQ after a tensor's producer
        var newInitializers = new List<TensorProto>();
        foreach (var (name, (scale, zp)) in quantized)
        {
            newInitializers.Add(Scalar(name + "_scale", scale));
            newInitializers.Add(new TensorProto { Name = name + "_zero_point", DataType = (int)TensorProto.Types.DataType.Uint8, RawData = ByteString.CopyFrom(zp) });
            List<NodeProto> pair =
            [
                Node("QuantizeLinear", [name, name + "_scale", name + "_zero_point"], name + "_quantized"),
                Node("DequantizeLinear", [name + "_quantized", name + "_scale", name + "_zero_point"], name + "_dequantized"),
            ];
            if (graph.Input.Any(i => i.Name == name)) first.AddRange(pair);
            else after[name] = pair;
        }

        // Every consumer of a quantized activation reads its dequantized value (one Q/DQ pair per tensor).
        foreach (var node in graph.Node)
        {
            for (var i = 0; i < node.Input.Count; i++)
                if (quantized.ContainsKey(node.Input[i])) node.Input[i] = node.Input[i] + "_dequantized";
        }

        var replaced = new HashSet<string>(StringComparer.Ordinal);
        var weightScales = new Dictionary<string, float[]>(StringComparer.Ordinal); // a weight two Convs share is quantized once
        foreach (var conv in plan.Convs.Select(c => graph.Node.First(n => n.Output.Count > 0 && n.Output[0] == c.Output[0])))
        {
            var input = conv.Input[0].EndsWith("_dequantized", StringComparison.Ordinal) ? conv.Input[0][..^"_dequantized".Length] : conv.Input[0];
            var inputScale = quantized[input].Scale;
            var weight = initializers[conv.Input[1]];
            if (!weightScales.TryGetValue(weight.Name, out var wScales))
            {
                (var wq, wScales) = Int8PerChannel(weight);
                weightScales[weight.Name] = wScales;
                newInitializers.AddRange(wq);
                first.Add(Node("DequantizeLinear", [wq[0].Name, wq[1].Name, wq[2].Name], weight.Name + "_dequantized", axis: 0));
                replaced.Add(weight.Name);
            }
            conv.Input[1] = weight.Name + "_dequantized";

            if (conv.Input.Count >= 3 && conv.Input[2].Length > 0)
            {
                var bias = initializers[conv.Input[2]];
                var bq = Int32Bias(bias, inputScale, wScales, conv.Output[0]);
                newInitializers.AddRange(bq);
                first.Add(Node("DequantizeLinear", [bq[0].Name, bq[1].Name, bq[2].Name], bq[0].Name + "_dequantized", axis: 0));
                replaced.Add(bias.Name);
                conv.Input[2] = bq[0].Name + "_dequantized";
            }
        }

        // Initializers no node reads any more (the float weights and biases) go; shared ones stay.
        var stillRead = graph.Node.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        var kept = graph.Initializer.Where(t => !replaced.Contains(t.Name) || stillRead.Contains(t.Name)).ToList();
        graph.Initializer.Clear();
        graph.Initializer.AddRange(kept);
        graph.Initializer.AddRange(newInitializers);

        // Nodes stay in topological order: weight DQs first, each activation's Q/DQ right after its producer.
        var nodes = new List<NodeProto>(first);
        foreach (var node in graph.Node)
        {
            nodes.Add(node);
            foreach (var output in node.Output)
                if (after.TryGetValue(output, out var pair)) nodes.AddRange(pair);
        }
        graph.Node.Clear();
        graph.Node.AddRange(nodes);
        return model.ToByteArray();
    }

    /// <summary>How many Convs a plan quantizes.</summary>
    public static int ConvCount(Plan plan) => plan.Convs.Count;

    // The tensors from which some Conv is reachable downstream (nodes are in topological order: walk them backwards).
    private static HashSet<string> FeedsConv(GraphProto graph)
    {
        var feeds = new HashSet<string>(StringComparer.Ordinal);
        for (var i = graph.Node.Count - 1; i >= 0; i--)
        {
            var node = graph.Node[i];
            if (node.OpType == "Conv" || node.Output.Any(feeds.Contains))
                foreach (var input in node.Input) feeds.Add(input);
        }
        return feeds;
    }

    // torch.onnx shares equal initializers through Identity nodes (Convs' zero biases among them): a Conv reads the
    // initializer itself, so its bias is a constant the quantizer can see.
    private static void FoldIdentities(GraphProto graph, Dictionary<string, TensorProto> initializers, HashSet<string> graphOutputs)
    {
        var alias = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            if (node.OpType == "Identity" && string.IsNullOrEmpty(node.Domain) && initializers.ContainsKey(node.Input[0]) && !graphOutputs.Contains(node.Output[0]))
                alias[node.Output[0]] = node.Input[0];
        }
        if (alias.Count == 0) return;
        var kept = graph.Node.Where(n => !(n.OpType == "Identity" && alias.ContainsKey(n.Output[0]))).ToList();
        foreach (var node in kept)
        {
            for (var i = 0; i < node.Input.Count; i++)
                if (alias.TryGetValue(node.Input[i], out var source)) node.Input[i] = source;
        }
        graph.Node.Clear();
        graph.Node.AddRange(kept);
    }

    // Conv → Relu (the Relu the Conv's only consumer): the Conv writes the Relu's output, and the Relu goes.
    private static void FoldRelus(GraphProto graph, HashSet<object?> foldable, HashSet<string> graphOutputs)
    {
        var consumers = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
            foreach (var input in node.Input)
                (consumers.TryGetValue(input, out var list) ? list : consumers[input] = []).Add(node);

        var removed = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        var dropped = new HashSet<string>(StringComparer.Ordinal);
        foreach (var conv in graph.Node.Where(foldable.Contains).ToList())
        {
            var output = conv.Output[0];
            if (graphOutputs.Contains(output) || !consumers.TryGetValue(output, out var users) || users.Count != 1) continue;
            var relu = users[0];
            if (relu.OpType != "Relu" || !string.IsNullOrEmpty(relu.Domain)) continue;
            conv.Output[0] = relu.Output[0];
            removed.Add(relu);
            dropped.Add(output);
        }
        var kept = graph.Node.Where(n => !removed.Contains(n)).ToList();
        graph.Node.Clear();
        graph.Node.AddRange(kept);
        var info = graph.ValueInfo.Where(v => !dropped.Contains(v.Name)).ToList();
        graph.ValueInfo.Clear();
        graph.ValueInfo.AddRange(info);
    }

    // ONNX Runtime's asymmetric uint8: the range always holds 0 (so zero padding is exact).
    private static (float Scale, byte ZeroPoint) Uint8Params(TensorRange r)
    {
        var min = Math.Min(r.Min, 0f);
        var max = Math.Max(r.Max, 0f);
        if (max - min <= 0 || !float.IsFinite(max - min)) return (1f, 0);
        var scale = (max - min) / 255f;
        var zp = (byte)Math.Clamp(Math.Round(-min / scale, MidpointRounding.ToEven), 0, 255);
        return (scale, zp);
    }

    // Symmetric int8 per output channel in [-127, 127] (quantize_static's range for symmetric int8 weights).
    private static (TensorProto[] Tensors, float[] Scales) Int8PerChannel(TensorProto weight)
    {
        var values = FloatData(weight);
        var channels = (int)weight.Dims[0];
        var per = values.Length / channels;
        var q = new byte[values.Length];
        var scales = new float[channels];
        for (var c = 0; c < channels; c++)
        {
            var span = values.AsSpan(c * per, per);
            var absMax = 0f;
            foreach (var v in span) absMax = Math.Max(absMax, Math.Abs(v));
            var scale = absMax > 0 ? absMax / 127f : 1f;
            scales[c] = scale;
            for (var i = 0; i < per; i++)
                q[c * per + i] = (byte)(sbyte)Math.Clamp(Math.Round(span[i] / scale, MidpointRounding.ToEven), -127, 127);
        }
        var tensor = new TensorProto { Name = weight.Name + "_quantized", DataType = (int)TensorProto.Types.DataType.Int8, RawData = ByteString.CopyFrom(q) };
        tensor.Dims.AddRange(weight.Dims);
        return ([tensor, Vector(weight.Name + "_scale", scales), Zeros(weight.Name + "_zero_point", TensorProto.Types.DataType.Int8, channels)], scales);
    }

    // Bias as int32 in units of input scale × weight scale, zero point 0: what QLinearConv adds to its accumulator.
    private static TensorProto[] Int32Bias(TensorProto bias, float inputScale, float[] weightScales, string convOutput)
    {
        var values = FloatData(bias);
        var q = new int[values.Length];
        var scales = new float[values.Length];
        for (var c = 0; c < values.Length; c++)
        {
            scales[c] = inputScale * weightScales[c];
            q[c] = (int)Math.Clamp(Math.Round(values[c] / scales[c], MidpointRounding.ToEven), int.MinValue, int.MaxValue);
        }
        // Named after the Conv: a bias shared by two Convs gets two quantizations (their input scales differ).
        var name = bias.Name + "_" + convOutput;
        var tensor = new TensorProto { Name = name + "_quantized", DataType = (int)TensorProto.Types.DataType.Int32, RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(q.AsSpan())) };
        tensor.Dims.Add(values.Length);
        return [tensor, Vector(name + "_scale", scales), Zeros(name + "_zero_point", TensorProto.Types.DataType.Int32, values.Length)];
    }

    private static float[] FloatData(TensorProto t)
    {
        if (t.FloatData.Count > 0) return [.. t.FloatData];
        if (t.RawData.Length > 0) return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray();
        throw new InvalidDataException($"initializer '{t.Name}' has no inline float data (external data is not supported)");
    }

    private static TensorProto Scalar(string name, float value) =>
        new() { Name = name, DataType = Float, RawData = ByteString.CopyFrom(BitConverter.GetBytes(value)) };

    private static TensorProto Vector(string name, float[] values)
    {
        var t = new TensorProto { Name = name, DataType = Float, RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())) };
        t.Dims.Add(values.Length);
        return t;
    }

    private static TensorProto Zeros(string name, TensorProto.Types.DataType type, int count)
    {
        var size = type == TensorProto.Types.DataType.Int32 ? 4 : 1;
        var t = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(new byte[count * size]) };
        t.Dims.Add(count);
        return t;
    }

    private static NodeProto Node(string op, string[] inputs, string output, int? axis = null)
    {
        var node = new NodeProto { OpType = op, Name = $"{output}_{op}" };
        node.Input.AddRange(inputs);
        node.Output.Add(output);
        if (axis is { } a) node.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = a });
        return node;
    }
}
