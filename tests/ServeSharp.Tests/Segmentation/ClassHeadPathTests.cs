using System.Net;
using System.Text.Json;
using ServeSharp.Archive;
using ServeSharp.Handlers.Segmentation;
using ServeSharp.Handlers.Segmentation.Graph;
using ServeSharp.Handlers.Segmentation.Int8.Onnx;
using ServeSharp.Sdk;
using ServeSharp.Tests.Support;
using Xunit.Abstractions;

namespace ServeSharp.Tests.Segmentation;

/// <summary>
/// The class-head path (argmax and confidence appended to the graph, run through an IO binding: the GPU workers'
/// default, <c>class_head: true</c> on CPU) gives the logits path's answers through the real handler on real
/// photographs: class maps exactly, confidences within 1e-5. Run here on ONNX Runtime's CPU provider.
/// </summary>
[Collection("parity")]
public sealed class ClassHeadPathTests(ParityModels models, ITestOutputHelper log)
{

    [Theory]
    [InlineData("  mode: torchserve\n", "", true)] // TorchServe's JSON at the model's resolution
    [InlineData("  mode: torchserve\n", "output=mask", true)] // the centre crop placed back by nearest neighbour
    [InlineData("  mode: torchserve\n", "output=summary", true)]
    [InlineData("  mode: torchvision\n  resize_size: 200\n", "output=mask", false)] // logits resized to the image first
    [InlineData("  mode: torchserve\n", "scales=0.75,1.0&flip=true&output=mask", false)] // TTA averages probabilities
    [InlineData("  mode: torchserve\n", "crop_size=128&stride=96&output=mask", false)] // sliding windows sum logits
    public async Task Every_photograph_gets_the_logits_paths_answer(string yaml, string query, bool throughHead)
    {
        using var plain = new SegmenterHarness(models.DeepLabV3Plus.Onnx, yaml + "  class_head: false\n");
        using var headed = new SegmenterHarness(models.DeepLabV3Plus.Onnx, yaml + "  class_head: true\n");
        Assert.Null(Head(plain));
        Assert.NotNull(Head(headed));
        // Twice: the first run of a shape lets ONNX Runtime allocate the outputs, the next reuses the kept buffers.
        for (var round = 0; round < 2; round++)
        {
            foreach (var photo in ParityModels.PngPhotos)
            {
                var image = await File.ReadAllBytesAsync(models.Photo(photo));
                var expected = await plain.RunAsync(image, query);
                var actual = await headed.RunAsync(image, query);
                Same(expected, actual, $"{photo} ({query}), round {round}");
            }
        }
        Assert.Equal(throughHead ? 2 * ParityModels.PngPhotos.Length : 0, Head(headed)!.Runs);
    }

    [Fact]
    public async Task A_batch_of_photographs_runs_as_one_head_run_and_agrees_image_by_image()
    {
        using var plain = new SegmenterHarness(models.DeepLabV3Plus.Onnx, "  mode: torchserve\n  class_head: false\n");
        using var headed = new SegmenterHarness(models.DeepLabV3Plus.Onnx, "  mode: torchserve\n  class_head: true\n");
        var batch = new List<(byte[], string)>();
        foreach (var photo in ParityModels.PngPhotos) batch.Add((await File.ReadAllBytesAsync(models.Photo(photo)), ""));
        // One request asks for the probabilities: it needs the logits, and runs on its own beside the head's batch.
        batch.Add((batch[0].Item1, "output=tensors&outputs=classes,probabilities"));
        for (var round = 0; round < 2; round++)
        {
            var expected = await plain.RunAsync([.. batch]);
            var actual = await headed.RunAsync([.. batch]);
            for (var i = 0; i < ParityModels.PngPhotos.Length; i++) Same(expected[i], actual[i], $"{ParityModels.PngPhotos[i]}, round {round}");
            Assert.Null(actual[^1].StatusCode);
            Assert.Equal(expected[^1].Body.ToArray(), actual[^1].Body.ToArray());
        }
        Assert.Equal(2, Head(headed)!.Runs);
    }

    [Fact]
    public async Task A_model_that_ends_in_argmax_gets_no_head_and_still_answers()
    {
        using var headed = new SegmenterHarness(TestModels.TinyArgmax, "  mode: torchserve\n  class_head: true\n");
        Assert.Null(Head(headed));
        var answer = await headed.RunAsync(await File.ReadAllBytesAsync(models.Photo(ParityModels.PngPhotos[0])));
        Assert.Null(answer.StatusCode);
    }

    [Fact]
    public void A_cpu_worker_without_the_key_keeps_the_logits_path()
    {
        using var harness = new SegmenterHarness(TestModels.Tiny);
        Assert.Null(Head(harness));
    }

    [Fact]
    public async Task A_model_whose_output_is_smaller_than_its_input_falls_back_to_the_logits_once_and_answers_as_they_do()
    {
        // tiny with a 2×2 average pool after it: logits at half the input's size, which the handler resizes before the
        // argmax. The head's first run shows the smaller output; from then on the logits path answers.
        var model = ModelProto.Parser.ParseFrom(await File.ReadAllBytesAsync(TestModels.Tiny));
        var output = model.Graph.Output[0].Name;
        foreach (var node in model.Graph.Node)
        {
            for (var i = 0; i < node.Output.Count; i++) if (node.Output[i] == output) node.Output[i] = "full";
        }
        var pool = new NodeProto { Name = "pool", OpType = "AveragePool" };
        pool.Input.Add("full");
        pool.Output.Add(output);
        var kernel = new AttributeProto { Name = "kernel_shape", Type = AttributeProto.Types.AttributeType.Ints };
        kernel.Ints.Add([2, 2]);
        var strides = new AttributeProto { Name = "strides", Type = AttributeProto.Types.AttributeType.Ints };
        strides.Ints.Add([2, 2]);
        pool.Attribute.Add([kernel, strides]);
        model.Graph.Node.Add(pool);
        using var dir = new TempDir();
        var onnx = dir.File("pooled.onnx");
        await File.WriteAllBytesAsync(onnx, Google.Protobuf.MessageExtensions.ToByteArray(model));

        using var plain = new SegmenterHarness(onnx, "  mode: original\n  class_head: false\n");
        using var headed = new SegmenterHarness(onnx, "  mode: original\n  class_head: true\n");
        Assert.NotNull(Head(headed));
        var image = await File.ReadAllBytesAsync(models.Photo(ParityModels.PngPhotos[2]));
        for (var round = 0; round < 2; round++)
            Same(await plain.RunAsync(image, "output=mask"), await headed.RunAsync(image, "output=mask"), $"pooled, round {round}");
        Assert.Equal(0, Head(headed)!.Runs);
        Assert.True(Head(headed)!.HandedBack);
    }

    [Fact]
    public async Task A_model_with_its_weights_in_a_file_beside_it_keeps_the_logits_path_and_loads()
    {
        // tiny with its initializers moved to weights.bin (TensorProto.external_data (13), data_location (14) = EXTERNAL):
        // opened from memory, ONNX Runtime could not find the file, so the head is not put on.
        using var dir = new TempDir();
        var weights = new MemoryStream();
        var graph = new ProtoWriter();
        var model = new ProtoWriter();
        var fields = ProtoReader.Fields(await File.ReadAllBytesAsync(TestModels.Tiny));
        foreach (var g in ProtoReader.Fields(fields.Single(f => f.Number == 7).Payload))
        {
            if (g.Number != 5)
            {
                graph.Copy(g.Whole.Span);
                continue;
            }
            var tensor = new ProtoWriter();
            foreach (var t in ProtoReader.Fields(g.Payload))
            {
                if (t.Number is 4 or 9)
                {
                    tensor.Message(13, new ProtoWriter().String(1, "location").String(2, "weights.bin"));
                    tensor.Message(13, new ProtoWriter().String(1, "offset").String(2, weights.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                    tensor.Message(13, new ProtoWriter().String(1, "length").String(2, t.Payload.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                    tensor.Varint(14, 1);
                    weights.Write(t.Payload.Span);
                }
                else tensor.Copy(t.Whole.Span);
            }
            graph.Message(5, tensor);
        }
        foreach (var f in fields)
        {
            if (f.Number == 7) model.Message(7, graph);
            else model.Copy(f.Whole.Span);
        }
        var onnx = dir.File("external.onnx");
        await File.WriteAllBytesAsync(onnx, model.Written.ToArray());
        var bin = dir.File("weights.bin");
        await File.WriteAllBytesAsync(bin, weights.ToArray());
        Assert.True(weights.Length > 0);
        Assert.True(GraphOutputs.UsesExternalData(await File.ReadAllBytesAsync(onnx)));
        Assert.False(GraphOutputs.UsesExternalData(await File.ReadAllBytesAsync(TestModels.Tiny)));

        using var plain = new SegmenterHarness(onnx, "  mode: torchserve\n  class_head: false\n", bin);
        using var headed = new SegmenterHarness(onnx, "  mode: torchserve\n  class_head: true\n", bin);
        Assert.Null(Head(headed));
        var image = await File.ReadAllBytesAsync(models.Photo(ParityModels.PngPhotos[0]));
        Same(await plain.RunAsync(image), await headed.RunAsync(image), "external weights");
    }

    [Fact]
    public async Task Customized_describe_says_whether_the_worker_runs_the_head_and_how_often()
    {
        // Through the real server: two archives of the same model, the head asked for on one, CPU's default on the other.
        using var dir = new TempDir();
        var store = dir.Sub("store");
        foreach (var (name, yaml) in (ValueTuple<string, string>[])[("headed", "  class_head: true\n"), ("plain", "")])
        {
            var config = dir.File(name + ".yaml");
            await File.WriteAllTextAsync(config, "minWorkers: 1\nmaxWorkers: 1\nhandler:\n  mode: torchserve\n" + yaml);
            ArchiveWriter.Write(new ArchiveSpec { ModelName = name, SerializedFile = models.DeepLabV3Plus.Onnx, Handler = "image_segmenter", ConfigFile = config, ExportPath = store });
        }
        await using var server = await InProcessServer.StartAsync(store, ["headed=headed.mar", "plain=plain.mar"]);
        await server.WaitReadyAsync("headed");
        await server.WaitReadyAsync("plain");
        var photo = await File.ReadAllBytesAsync(models.Photo(ParityModels.PngPhotos[0]));
        using var inference = server.Inference;
        using var management = server.Management;
        foreach (var name in (string[])["headed", "plain"])
        {
            using var answer = await inference.PostAsync($"/predictions/{name}?output=mask", new ByteArrayContent(photo));
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        }

        var headed = await Metadata(management, "headed");
        log.WriteLine(headed.ToString());
        Assert.Equal((true, 1), (headed.GetProperty("classHead").GetBoolean(), headed.GetProperty("classHeadRuns").GetInt32()));
        Assert.False(headed.TryGetProperty("classHeadNote", out _));
        var plain = await Metadata(management, "plain");
        log.WriteLine(plain.ToString());
        Assert.Equal((false, 0), (plain.GetProperty("classHead").GetBoolean(), plain.GetProperty("classHeadRuns").GetInt32()));
        Assert.Equal("off on CPU workers unless class_head: true", plain.GetProperty("classHeadNote").GetString());
        Assert.Equal("torchserve", plain.GetProperty("mode").GetString());

        static async Task<JsonElement> Metadata(HttpClient management, string name)
        {
            using var response = await management.GetAsync($"/models/{name}?customized=true");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            return json.RootElement[0].GetProperty("customizedMetadata").Clone();
        }
    }

    private static ClassHeadRunner? Head(SegmenterHarness harness) => ((ImageSegmenter)harness.Handler).Head;

    private void Same(HandlerOutput expected, HandlerOutput actual, string what)
    {
        Assert.Null(expected.StatusCode);
        Assert.Null(actual.StatusCode);
        if (expected.ContentType != "application/json" || SegmenterHarness.Text(expected).StartsWith('{'))
        {
            // PNGs and summaries carry classes only: byte for byte.
            Assert.Equal(expected.Body.ToArray(), actual.Body.ToArray());
            return;
        }
        var (classes, probs, w, h) = SegmenterHarness.ParseTorchServe(expected);
        var (headClasses, headProbs, hw, hh) = SegmenterHarness.ParseTorchServe(actual);
        Assert.Equal((w, h), (hw, hh));
        Assert.Equal(classes, headClasses);
        var worst = 0f;
        for (var i = 0; i < probs.Length; i++) worst = Math.Max(worst, Math.Abs(probs[i] - headProbs[i]));
        log.WriteLine($"{what}: {w}x{h}, {classes.Distinct().Count()} classes, largest confidence difference {worst:E2}");
        Assert.True(worst <= 1e-5f, $"{what}: a confidence differs by {worst}");
    }
}
