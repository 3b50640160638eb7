using System.IO.Compression;
using System.Net;
using System.Runtime.InteropServices;
using System.Text.Json;
using ServeSharp.Archive;
using Microsoft.ML.OnnxRuntime;
using ServeSharp.Contracts;
using ServeSharp.Handlers.Segmentation.Fp16;
using ServeSharp.Handlers.Segmentation.Int8.Onnx;
using ServeSharp.Tests.Support;
using Xunit.Abstractions;

namespace ServeSharp.Tests.Segmentation;

/// <summary>
/// precision: fp16's conversion. Its structure (float16 weights, float graph IO with Casts at the boundaries, Resize kept
/// in fp32, shape arithmetic untouched), and its class maps against fp32 on the photographs. ONNX Runtime's CPU provider
/// runs the fp16 graph (probed here: it inserts Casts to fp32 around nodes with no float16 kernel on x86), so the
/// agreement below is the float16 weights' and the fp16 tensors' between kernels; CUDA's fp16 arithmetic is not measured.
/// </summary>
[Collection("parity")]
public sealed class Fp16Tests(ParityModels models, ITestOutputHelper log)
{
    private const int Float = 1, Float16 = 10;

    [Fact]
    public void Weights_become_float16_and_the_graph_keeps_float_io_with_casts_at_the_boundaries()
    {
        var fp32Bytes = File.ReadAllBytes(models.DeepLabV3Plus.Onnx);
        var before = ModelProto.Parser.ParseFrom(fp32Bytes).Graph;
        var after = ModelProto.Parser.ParseFrom(Float16Converter.Convert(fp32Bytes)).Graph;

        // Every float initializer (the Resizes here take int64 sizes: no float input of theirs is an initializer).
        Assert.Equal(before.Initializer.Count, after.Initializer.Count);
        Assert.Contains(before.Initializer, t => t.DataType == Float);
        Assert.DoesNotContain(after.Initializer, t => t.DataType == Float);
        foreach (var (old, converted) in before.Initializer.Zip(after.Initializer).Where(p => p.First.DataType == Float))
        {
            Assert.Equal(Float16, converted.DataType);
            var expected = Floats(old).Select(v => (Half)Float16Converter.Clamp(v)).ToArray();
            Assert.Equal(expected, MemoryMarshal.Cast<byte, Half>(converted.RawData.Span).ToArray());
        }

        // The graph's input and output stay float; a Cast to float16 follows the input, and nothing else reads the input
        // but that Cast and the Shape nodes (shape arithmetic is left alone).
        Assert.Equal(Float, after.Input.Single().Type.TensorType.ElemType);
        Assert.Equal(Float, after.Output.Single().Type.TensorType.ElemType);
        var input = after.Input.Single().Name;
        var readers = after.Node.Where(n => n.Input.Contains(input)).ToList();
        Assert.Single(readers, n => n.OpType == "Cast" && To(n) == Float16);
        Assert.All(readers, n => Assert.True(n.OpType is "Cast" or "Shape", $"{n.OpType} {n.Name} reads the float input"));
        var firstConv = after.Node.First(n => n.OpType == "Conv");
        Assert.EndsWith("_servesharp_fp16", firstConv.Input[0], StringComparison.Ordinal);

        // Each Resize reads an fp32 copy of an fp16 tensor and, unless it is the graph's output, its result is cast back.
        var resizes = after.Node.Where(n => n.OpType == "Resize").ToList();
        Assert.Equal(before.Node.Count(n => n.OpType == "Resize"), resizes.Count);
        var output = after.Output.Single().Name;
        foreach (var resize in resizes)
        {
            var producer = after.Node.Single(n => n.Output.Contains(resize.Input[0]));
            Assert.True(producer.OpType == "Cast" && To(producer) == Float, $"{resize.Name} reads {producer.OpType}");
            if (resize.Output[0] == output) continue;
            Assert.All(after.Node.Where(n => n.Input.Contains(resize.Output[0])), n => Assert.True(n.OpType == "Cast" && To(n) == Float16));
        }
        Assert.Contains(resizes, r => r.Output[0] == output);
        // Shape arithmetic (Gather, Unsqueeze, Concat, Slice, Cast to int64 fed by Shape) is as it was.
        Assert.Equal(before.Node.Count(n => n.OpType == "Cast"), after.Node.Count(n => n.OpType == "Cast" && !n.Name.StartsWith(Float16Converter.CastPrefix, StringComparison.Ordinal)));
        Assert.All(after.Node.Where(n => n.OpType == "Cast" && !n.Name.StartsWith(Float16Converter.CastPrefix, StringComparison.Ordinal)), n => Assert.Equal(7, To(n)));
    }

    [Fact]
    public void Onnx_runtimes_cpu_provider_runs_the_fp16_graph_and_its_class_maps_agree_with_fp32_on_the_photographs()
    {
        // The probe: the CPU provider accepts and runs the converted graph (it casts around nodes with no float16 kernel).
        var result = Fp16Conversion.Convert(models.DeepLabV3Plus.Onnx, ConfigSection.Empty, [.. ParityModels.PngPhotos.Select(models.Photo)], threads: 2);
        foreach (var image in result.Images) log.WriteLine($"{image.Image}: {image.Agreement:P3} of {image.Pixels} pixels");
        log.WriteLine($"all: {result.Agreement:P3}, {result.Convs} Convs");
        Assert.Equal(ParityModels.PngPhotos.Length, result.Images.Count);
        Assert.True(result.Agreement >= 0.995, $"fp16 agrees with fp32 on {result.Agreement:P3} of the pixels");
        Assert.Equal(72, result.Convs);
    }

    [Fact]
    public void Constants_read_only_by_fp32_operators_stay_float_and_are_not_rounded()
    {
        // tiny (a 1×1 conv) followed by a Resize whose scales are a float initializer: the scales stay float.
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(TestModels.Tiny));
        var graph = model.Graph;
        var output = graph.Output[0].Name;
        foreach (var node in graph.Node)
        {
            for (var i = 0; i < node.Output.Count; i++) if (node.Output[i] == output) node.Output[i] = "logits";
        }
        var scales = new TensorProto { Name = "scales", DataType = Float };
        scales.Dims.Add(4);
        scales.FloatData.Add([1f, 1f, 1.1f, 1.1f]);
        graph.Initializer.Add(scales);
        var resize = new NodeProto { Name = "up", OpType = "Resize" };
        resize.Input.Add(["logits", "", "scales"]);
        resize.Output.Add(output);
        resize.Attribute.Add(new AttributeProto { Name = "mode", Type = AttributeProto.Types.AttributeType.String, S = Google.Protobuf.ByteString.CopyFromUtf8("linear") });
        graph.Node.Add(resize);
        if (model.OpsetImport.Single(o => o.Domain is "" or "ai.onnx").Version < 13) model.OpsetImport.Single(o => o.Domain is "" or "ai.onnx").Version = 13;
        var bytes = Google.Protobuf.MessageExtensions.ToByteArray(model);

        var converted = ModelProto.Parser.ParseFrom(Float16Converter.Convert(bytes)).Graph;
        var kept = converted.Initializer.Single(t => t.Name == "scales");
        Assert.Equal(Float, kept.DataType);
        Assert.Equal([1f, 1f, 1.1f, 1.1f], Floats(kept));
        Assert.All(converted.Initializer.Where(t => t.Name != "scales"), t => Assert.Equal(Float16, t.DataType));

        // And it runs: the output has the scaled size.
        using var session = new InferenceSession(Float16Converter.Convert(bytes));
        var data = new float[3 * 10 * 10];
        using var x = OrtValue.CreateTensorValueFromMemory(data, [1, 3, 10, 10]);
        using var run = new RunOptions();
        using var outputs = session.Run(run, [session.InputMetadata.Keys.Single()], [x], [output]);
        Assert.Equal([1L, 4, 11, 11], outputs[0].GetTensorTypeAndShape().Shape);
        Assert.Equal(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float, outputs[0].GetTensorTypeAndShape().ElementDataType);
    }

    [Fact]
    public void A_model_with_control_flow_is_refused_plainly()
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(TestModels.Tiny));
        var node = new NodeProto { Name = "branch", OpType = "If" };
        node.Attribute.Add(new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph });
        model.Graph.Node.Add(node);
        var e = Assert.Throws<InvalidDataException>(() => Float16Converter.Convert(Google.Protobuf.MessageExtensions.ToByteArray(model)));
        Assert.Contains("control flow", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_archiver_writes_an_fp16_archive_with_its_agreement_and_a_cpu_only_server_refuses_it_with_the_reason()
    {
        using var dir = new TempDir();
        var model = dir.File("model.onnx");
        File.Copy(models.DeepLabV3Plus.Onnx, model);
        var config = dir.File("model-config.yaml");
        File.WriteAllText(config, "precision: fp16\nminWorkers: 1\nmaxWorkers: 1\nhandler:\n  mode: torchserve\n");
        var store = dir.Sub("model-store");
        var parity = dir.Sub("parity");
        foreach (var photo in ParityModels.PngPhotos) File.Copy(models.Photo(photo), Path.Combine(parity, photo));

        // Without parity images: refused, nothing written.
        var (code, output) = Repo.Archiver("--model-name", "fp16", "--serialized-file", model, "--handler", "image_segmenter", "-c", config, "--export-path", store);
        Assert.NotEqual(0, code);
        Assert.Contains("--parity-samples", output, StringComparison.Ordinal);
        Assert.Empty(Directory.EnumerateFileSystemEntries(store));

        (code, output) = Repo.Archiver("--model-name", "fp16", "--serialized-file", model, "--handler", "image_segmenter", "-c", config, "--export-path", store, "--parity-samples", parity);
        log.WriteLine(output);
        Assert.True(code == 0, output);
        using (var zip = ZipFile.OpenRead(Path.Combine(store, "fp16.mar")))
        {
            using var json = JsonDocument.Parse(zip.GetEntry(QuantizationReport.RelativePath)!.Open());
            var report = json.RootElement;
            log.WriteLine(report.ToString());
            Assert.Equal("fp16", report.GetProperty("precision").GetString());
            Assert.Equal("model.fp16.onnx", report.GetProperty("quantizedFile").GetString());
            Assert.True(report.GetProperty("agreement").GetDouble() >= QuantizationReport.DefaultGate);
            Assert.True(report.GetProperty("passed").GetBoolean());
            Assert.False(report.TryGetProperty("calibration", out _));
            Assert.Contains("CPU provider", report.GetProperty("measuredOn").GetString(), StringComparison.Ordinal);
            Assert.NotNull(zip.GetEntry("model.fp16.onnx"));
            Assert.NotNull(zip.GetEntry("model.onnx"));
        }

        // The archive opens and names the fp16 model as the one to serve...
        using (var opened = ModelArchive.Open(Path.Combine(store, "fp16.mar"), dir.Sub("extract")))
            Assert.Equal("model.fp16.onnx", opened.ServedModelFile);

        // ...but this server has no GPU: registration is refused with the reason.
        await using var server = await InProcessServer.StartAsync(store);
        using var management = server.Management;
        using var refused = await management.PostAsync("/models?url=fp16.mar&initial_workers=1&synchronous=true", null);
        var body = await refused.Content.ReadAsStringAsync();
        log.WriteLine(body);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        var message = JsonDocument.Parse(body).RootElement.GetProperty("message").GetString()!;
        Assert.Contains("precision: fp16", message, StringComparison.Ordinal);
        Assert.Contains("GPU workers only", message, StringComparison.Ordinal);
        Assert.Contains("float16 Conv kernel", message, StringComparison.Ordinal);
    }

    [Fact]
    public void Precision_fp16_without_its_model_is_refused_when_the_archive_opens()
    {
        using var dir = new TempDir();
        var config = dir.File("model-config.yaml");
        File.WriteAllText(config, "precision: fp16\n");
        var mar = ArchiveWriter.Write(new ArchiveSpec { ModelName = "plain", SerializedFile = models.DeepLabV3Plus.Onnx, Handler = "image_segmenter", ConfigFile = config, ExportPath = dir.Path });
        var e = Assert.Throws<ArchiveException>(() => ModelArchive.Open(mar, dir.Sub("extract")));
        Assert.Contains("precision: fp16", e.Message, StringComparison.Ordinal);
        Assert.Contains("--parity-samples", e.Message, StringComparison.Ordinal);
    }

    private static long To(NodeProto cast) => cast.Attribute.Single(a => a.Name == "to").I;

    private static float[] Floats(TensorProto t) => t.FloatData.Count > 0 ? [.. t.FloatData] : MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray();
}
