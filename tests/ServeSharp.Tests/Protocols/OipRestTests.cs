using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Protocols;

/// <summary>
/// The Open Inference Protocol v2 over REST with plain HTTP, JSON and the binary tensor extension, on the real in-process
/// host: health and metadata, inference from encoded images, pixels and model tensors agreeing with the TorchServe REST
/// answer, batches, and the protocol's {"error"} answers.
/// </summary>
[Collection("protocols")]
public sealed class OipRestTests(ProtocolStoreFixture store)
{
    private const int W = 40, H = 24;

    [Fact]
    public async Task Health_and_metadata_answer_as_the_protocol_says()
    {
        await using var server = await StartAsync();
        using var http = server.Inference;
        Assert.True((await http.GetFromJsonAsync("/v2/health/live")).GetProperty("live").GetBoolean());
        Assert.True((await http.GetFromJsonAsync("/v2/health/ready")).GetProperty("ready").GetBoolean());
        var meta = await http.GetFromJsonAsync("/v2");
        Assert.Equal("servesharp", meta.GetProperty("name").GetString());
        Assert.Contains("binary_tensor_data", meta.GetProperty("extensions").EnumerateArray().Select(e => e.GetString()));

        foreach (var path in (string[])["/v2/models/seg", "/v2/models/seg/versions/1.0"])
        {
            var model = await http.GetFromJsonAsync(path);
            Assert.Equal("seg", model.GetProperty("name").GetString());
            Assert.Equal(["1.0"], model.GetProperty("versions").EnumerateArray().Select(v => v.GetString()));
            Assert.Equal("onnxruntime_onnx", model.GetProperty("platform").GetString());
            Assert.Equal([("image", "BYTES"), ("pixels", "UINT8"), ("tensor", "FP32")], Specs(model.GetProperty("inputs")));
            Assert.Equal([("classes", "UINT8"), ("probabilities", "FP32")], Specs(model.GetProperty("outputs")));
        }
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/v2/models/seg/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/v2/models/seg/versions/1.0/ready")).StatusCode);
        var generic = await http.GetFromJsonAsync("/v2/models/gate");
        Assert.Equal([("data", "BYTES")], Specs(generic.GetProperty("inputs")));

        await AssertErrorAsync(await http.GetAsync("/v2/models/nosuch"), HttpStatusCode.NotFound, "nosuch");
        await AssertErrorAsync(await http.GetAsync("/v2/models/seg/versions/9.9/ready"), HttpStatusCode.NotFound, "9.9");
    }

    [Fact]
    public async Task An_encoded_image_gives_the_class_map_of_the_TorchServe_REST_answer_and_echoes_the_id()
    {
        await using var server = await StartAsync();
        using var http = server.Inference;
        var (_, png) = Images.Noise(W, H, seed: 1);
        var expected = await RestMaskAsync(http, png);

        var body = Request(new JsonObject { ["name"] = "image", ["datatype"] = "BYTES", ["shape"] = new JsonArray(1), ["data"] = new JsonArray(Convert.ToBase64String(png)) });
        body["id"] = "req-7";
        var answer = await InferAsync(http, body);
        Assert.Equal("req-7", answer.GetProperty("id").GetString());
        Assert.Equal("seg", answer.GetProperty("model_name").GetString());
        Assert.Equal("1.0", answer.GetProperty("model_version").GetString());
        var classes = Assert.Single(answer.GetProperty("outputs").EnumerateArray());
        Assert.Equal("classes", classes.GetProperty("name").GetString());
        Assert.Equal("UINT8", classes.GetProperty("datatype").GetString());
        Assert.Equal([1L, H, W], classes.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal(expected, classes.GetProperty("data").EnumerateArray().Select(v => v.GetByte()).ToArray());
    }

    [Fact]
    public async Task Pixels_and_the_models_own_tensor_give_the_same_classes_as_the_encoded_image()
    {
        await using var server = await StartAsync();
        using var http = server.Inference;
        var (pixels, png) = Images.Noise(W, H, seed: 2);
        var expected = await RestMaskAsync(http, png);

        var fromPixels = await InferAsync(http, Request(new JsonObject
        {
            ["name"] = "pixels", ["datatype"] = "UINT8", ["shape"] = new JsonArray(1, H, W, 3), ["data"] = new JsonArray([.. pixels.Select(p => (JsonNode)p)]),
        }));
        Assert.Equal(expected, ClassesOf(fromPixels));

        // The model's input: torchvision's normalisation done by the client, NCHW, sent as binary data.
        float[] mean = [0.485f, 0.456f, 0.406f], std = [0.229f, 0.224f, 0.225f];
        var tensor = new byte[3 * H * W * 4];
        for (var c = 0; c < 3; c++)
        {
            for (var i = 0; i < H * W; i++)
                BinaryPrimitives.WriteSingleLittleEndian(tensor.AsSpan((c * H * W + i) * 4), (pixels[i * 3 + c] / 255f - mean[c]) / std[c]);
        }
        var input = new JsonObject { ["name"] = "tensor", ["datatype"] = "FP32", ["shape"] = new JsonArray(1, 3, H, W), ["parameters"] = new JsonObject { ["binary_data_size"] = tensor.Length } };
        var (json, _) = await InferBinaryAsync(http, Request(input), tensor);
        Assert.Equal(expected, ClassesOf(json));
    }

    [Fact]
    public async Task Binary_in_and_out_carry_classes_and_probabilities_whose_argmax_is_the_classes()
    {
        await using var server = await StartAsync();
        using var http = server.Inference;
        var (_, png) = Images.Noise(W, H, seed: 3);
        var expected = await RestMaskAsync(http, png);

        var packed = new byte[4 + png.Length];
        BinaryPrimitives.WriteInt32LittleEndian(packed, png.Length);
        png.CopyTo(packed, 4);
        var body = Request(new JsonObject { ["name"] = "image", ["datatype"] = "BYTES", ["shape"] = new JsonArray(1), ["parameters"] = new JsonObject { ["binary_data_size"] = packed.Length } });
        body["outputs"] = new JsonArray(
            new JsonObject { ["name"] = "classes", ["parameters"] = new JsonObject { ["binary_data"] = true } },
            new JsonObject { ["name"] = "probabilities", ["parameters"] = new JsonObject { ["binary_data"] = true } });
        var (json, tail) = await InferBinaryAsync(http, body, packed);

        var outputs = json.GetProperty("outputs").EnumerateArray().ToArray();
        Assert.Equal(["classes", "probabilities"], outputs.Select(o => o.GetProperty("name").GetString()));
        var classSize = outputs[0].GetProperty("parameters").GetProperty("binary_data_size").GetInt32();
        Assert.Equal(H * W, classSize);
        Assert.Equal(expected, tail[..classSize]);
        var shape = outputs[1].GetProperty("shape").EnumerateArray().Select(d => (int)d.GetInt64()).ToArray();
        Assert.Equal([1, shape[1], H, W], shape);
        var probs = tail.AsSpan(classSize);
        Assert.Equal(shape[1] * H * W * 4, probs.Length);
        for (var i = 0; i < H * W; i++)
        {
            float sum = 0, best = -1;
            var arg = -1;
            for (var c = 0; c < shape[1]; c++)
            {
                var p = BinaryPrimitives.ReadSingleLittleEndian(probs[(((c * H * W) + i) * 4)..]);
                sum += p;
                if (p > best) (best, arg) = (p, c);
            }
            Assert.InRange(sum, 0.999f, 1.001f);
            Assert.Equal(expected[i], arg);
        }
    }

    [Fact]
    public async Task A_batch_of_three_images_answers_three_stacked_maps_and_mixed_sizes_are_refused()
    {
        await using var server = await StartAsync();
        using var http = server.Inference;
        var images = Enumerable.Range(10, 3).Select(seed => Images.Noise(W, H, seed).Png).ToArray();
        var expected = new List<byte>();
        foreach (var png in images) expected.AddRange(await RestMaskAsync(http, png));

        var answer = await InferAsync(http, Request(new JsonObject
        {
            ["name"] = "image", ["datatype"] = "BYTES", ["shape"] = new JsonArray(3), ["data"] = new JsonArray([.. images.Select(i => (JsonNode)Convert.ToBase64String(i))]),
        }));
        var classes = answer.GetProperty("outputs")[0];
        Assert.Equal([3L, H, W], classes.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal(expected, ClassesOf(answer));

        var mixed = Request(new JsonObject
        {
            ["name"] = "image", ["datatype"] = "BYTES", ["shape"] = new JsonArray(2),
            ["data"] = new JsonArray(Convert.ToBase64String(images[0]), Convert.ToBase64String(Images.Noise(W + 2, H, 4).Png)),
        });
        await AssertErrorAsync(await PostAsync(http, "/v2/models/seg/infer", mixed), HttpStatusCode.BadRequest, "different shapes");
    }

    public static TheoryData<string, string, HttpStatusCode, string> BadRequests => new()
    {
        { "/v2/models/nosuch/infer", """{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":["aGk="]}]}""", HttpStatusCode.NotFound, "nosuch" },
        { "/v2/models/seg/versions/2.0/infer", """{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":["aGk="]}]}""", HttpStatusCode.NotFound, "2.0" },
        { "/v2/models/seg/infer", """{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":["bm90IGFuIGltYWdl"]}]}""", HttpStatusCode.BadRequest, "decodable image" },
        { "/v2/models/seg/infer", """{"inputs":[{"name":"x","datatype":"INT32","shape":[1,2,2],"data":[1,2,3,4]}]}""", HttpStatusCode.BadRequest, "UINT8 [H, W, 3]" },
        { "/v2/models/seg/infer", """{"inputs":[{"name":"x","datatype":"UINT8","shape":[1,2,2,3],"data":[1,2,3]}]}""", HttpStatusCode.BadRequest, "3 bytes of data for 12 UINT8 elements" },
        { "/v2/models/seg/infer", """{"inputs":[{"name":"x","datatype":"UINT8","shape":[1,1,1,3],"data":[1,2,300]}]}""", HttpStatusCode.BadRequest, "not a UINT8 value" },
        { "/v2/models/seg/infer", """{"inputs":[{"name":"x","datatype":"FLOAT","shape":[1],"data":[1]}]}""", HttpStatusCode.BadRequest, "not a datatype" },
        { "/v2/models/seg/infer", """{"inputs":[{"name":"x","datatype":"BYTES","shape":[0],"data":[]}]}""", HttpStatusCode.BadRequest, "batch" },
        { "/v2/models/seg/infer", """{"inputs":[]}""", HttpStatusCode.BadRequest, "no inputs" },
        { "/v2/models/seg/infer", """{"inputs": 5}""", HttpStatusCode.BadRequest, "'inputs' array" },
        { "/v2/models/seg/infer", """{"inputs": [""", HttpStatusCode.BadRequest, "not valid JSON" },
        { "/v2/models/seg/infer", """{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":["aGk="]}],"outputs":[{"name":"logits"}]}""", HttpStatusCode.BadRequest, "no output 'logits'" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_requests_get_the_protocols_error_with_its_status(string path, string body, HttpStatusCode status, string message)
    {
        await using var server = await StartAsync();
        using var http = server.Inference;
        await AssertErrorAsync(await http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json")), status, message);
        // The model still serves after every refusal.
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/v2/models/seg/ready")).StatusCode);
    }

    [Fact]
    public async Task A_binary_header_length_past_the_body_is_a_400()
    {
        await using var server = await StartAsync();
        using var http = server.Inference;
        var content = new ByteArrayContent("{}"u8.ToArray());
        content.Headers.Add("Inference-Header-Content-Length", "99");
        await AssertErrorAsync(await http.PostAsync("/v2/models/seg/infer", content), HttpStatusCode.BadRequest, "Inference-Header-Content-Length");
    }

    [Fact]
    public async Task A_handler_without_tensors_answers_its_body_as_bytes()
    {
        await using var server = await StartAsync();
        using var http = server.Inference;
        var answer = await InferAsync(http, Request(new JsonObject { ["name"] = "text", ["datatype"] = "BYTES", ["shape"] = new JsonArray(1), ["data"] = new JsonArray("hello") }), "gate");
        var output = Assert.Single(answer.GetProperty("outputs").EnumerateArray());
        Assert.Equal("output", output.GetProperty("name").GetString());
        Assert.Equal("BYTES", output.GetProperty("datatype").GetString());
        Assert.Equal([1L], output.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        var handlerBody = JsonDocument.Parse(output.GetProperty("data")[0].GetString()!).RootElement;
        Assert.Equal("hello", handlerBody.GetProperty("body").GetString());
    }

    [Fact]
    public async Task A_full_queue_answers_503_with_an_error_and_the_admitted_requests_finish()
    {
        await using var server = await StartAsync("job_queue_size=1");
        using var http = server.Inference;
        var key = Guid.NewGuid().ToString("N");
        var body = Request(new JsonObject { ["name"] = "text", ["datatype"] = "BYTES", ["shape"] = new JsonArray(1), ["data"] = new JsonArray("x") });
        body["parameters"] = new JsonObject { ["block"] = key };
        var calls = Enumerable.Range(0, 6).Select(_ => PostAsync(http, "/v2/models/gate/infer", body)).ToArray();
        await GateHandler.Entered(key).WaitAsync(TimeSpan.FromSeconds(60));

        // Worker, aggregator and queue hold at most three, all blocked behind the gate: the first three answers are refusals.
        var finished = new List<Task<HttpResponseMessage>>();
        while (finished.Count < 3) finished.Add(await Task.WhenAny(calls.Except(finished)).WaitAsync(TimeSpan.FromSeconds(60)));
        foreach (var r in finished) await AssertErrorAsync(await r, HttpStatusCode.ServiceUnavailable, "queue is full");
        GateHandler.Gate(key).TrySetResult();
        var all = await Task.WhenAll(calls).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.All(all, r => Assert.True(r.StatusCode is HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable, r.StatusCode.ToString()));
        Assert.Contains(all, r => r.StatusCode == HttpStatusCode.OK);
    }

    [Fact]
    public async Task Every_protocol_counts_in_the_request_metrics_under_its_own_label()
    {
        await using var server = await StartAsync();
        using var http = server.Inference;
        var png = Images.Noise(W, H, 5).Png;
        await RestMaskAsync(http, png);
        await InferAsync(http, Request(new JsonObject { ["name"] = "image", ["datatype"] = "BYTES", ["shape"] = new JsonArray(1), ["data"] = new JsonArray(Convert.ToBase64String(png)) }));
        var v1 = await http.PostAsync("/v1/models/seg:predict", new StringContent($$"""{"instances":[{"data":"{{Convert.ToBase64String(png)}}"}]}"""));
        Assert.Equal(HttpStatusCode.OK, v1.StatusCode);

        using var metrics = server.Metrics;
        var text = await metrics.GetStringAsync("/metrics?name[]=ts_inference_requests_total");
        foreach (var protocol in (string[])["torchserve_rest", "oip_v2_rest", "kserve_v1"])
            Assert.Matches($$"""ts_inference_requests_total\{model_name="seg",model_version="default",hostname="[^"]+",protocol="{{protocol}}"\} 1\b""", text);
    }

    private Task<InProcessServer> StartAsync(string properties = "") =>
        InProcessServer.StartAsync(store.Store, ["seg=seg.mar", "gate=gate.mar"], properties, handlers: GateHandler.BuiltIn);

    private static JsonObject Request(JsonObject input) => new() { ["inputs"] = new JsonArray(input) };

    private static (string, string)[] Specs(JsonElement list) =>
        [.. list.EnumerateArray().Select(t => (t.GetProperty("name").GetString()!, t.GetProperty("datatype").GetString()!))];

    private static byte[] ClassesOf(JsonElement answer) =>
        [.. answer.GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(v => v.GetByte())];

    /// <summary>The class map TorchServe's REST API gives for the image (output=mask).</summary>
    private static async Task<byte[]> RestMaskAsync(HttpClient http, byte[] png)
    {
        var response = await http.PostAsync("/predictions/seg?output=mask", new ByteArrayContent(png));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return Images.GrayPixels(await response.Content.ReadAsByteArrayAsync());
    }

    private static Task<HttpResponseMessage> PostAsync(HttpClient http, string path, JsonObject body) =>
        http.PostAsync(path, new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));

    private static async Task<JsonElement> InferAsync(HttpClient http, JsonObject body, string model = "seg")
    {
        var response = await PostAsync(http, $"/v2/models/{model}/infer", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(text).RootElement;
    }

    /// <summary>A request with binary data after its JSON; the answer's JSON and the binary data after it.</summary>
    private static async Task<(JsonElement Json, byte[] Tail)> InferBinaryAsync(HttpClient http, JsonObject body, byte[] data)
    {
        var json = Encoding.UTF8.GetBytes(body.ToJsonString());
        var content = new ByteArrayContent([.. json, .. data]);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", json.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var response = await http.PostAsync("/v2/models/seg/infer", content);
        var bytes = await response.Content.ReadAsByteArrayAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, Encoding.UTF8.GetString(bytes));
        var length = response.Headers.TryGetValues("Inference-Header-Content-Length", out var values) ? int.Parse(values.Single(), System.Globalization.CultureInfo.InvariantCulture) : bytes.Length;
        return (JsonDocument.Parse(bytes.AsMemory(0, length)).RootElement, bytes[length..]);
    }

    internal static async Task AssertErrorAsync(HttpResponseMessage response, HttpStatusCode status, string message)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"{response.StatusCode}: {text}");
        var error = JsonDocument.Parse(text).RootElement;
        Assert.Equal(JsonValueKind.Object, error.ValueKind);
        Assert.Contains(message, error.GetProperty("error").GetString());
        Assert.False(error.TryGetProperty("code", out _), "KServe's errors are {\"error\": ...}, not TorchServe's");
    }
}

internal static class JsonHttp
{
    public static async Task<JsonElement> GetFromJsonAsync(this HttpClient http, string path)
    {
        var response = await http.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement;
    }
}
