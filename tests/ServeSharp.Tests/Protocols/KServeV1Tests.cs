using System.Text.Json;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Protocols;

/// <summary>KServe's v1 protocol driven with curl, as KServe's docs drive it, against the real host.</summary>
[Collection("protocols")]
public sealed class KServeV1Tests(ProtocolStoreFixture store)
{
    [Fact]
    public async Task Predict_answers_each_instance_as_the_TorchServe_REST_api_does()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["seg=seg.mar"]);
        var url = server.InferenceUrl.ToString().TrimEnd('/');
        var pngs = Enumerable.Range(20, 3).Select(seed => Images.Noise(32, 20, seed).Png).ToArray();
        using var http = server.Inference;
        var expected = new List<string>();
        foreach (var png in pngs) expected.Add(JsonDocument.Parse(await (await http.PostAsync("/predictions/seg", new ByteArrayContent(png))).Content.ReadAsStringAsync()).RootElement.GetRawText());

        var (ready, readyBody) = ServerProcess.Curl($"{url}/v1/models/seg");
        Assert.Equal(200, ready);
        Assert.True(JsonDocument.Parse(readyBody).RootElement.GetProperty("ready").GetBoolean());
        var (listed, listBody) = ServerProcess.Curl($"{url}/v1/models");
        Assert.Equal(200, listed);
        Assert.Equal(["seg"], JsonDocument.Parse(listBody).RootElement.GetProperty("models").EnumerateArray().Select(m => m.GetString()));

        // The three shapes KServe's examples send an image in: {"data": b64}, {"b64": b64}, and a bare b64 string.
        var b64 = pngs.Select(Convert.ToBase64String).ToArray();
        var request = $$"""{"instances": [{"data": "{{b64[0]}}"}, {"b64": "{{b64[1]}}"}, "{{b64[2]}}"]}""";
        var (status, body) = ServerProcess.Curl("-X", "POST", "-H", "Content-Type: application/json", "--data-binary", request, $"{url}/v1/models/seg:predict");
        Assert.True(status == 200, body);
        var predictions = JsonDocument.Parse(body).RootElement.GetProperty("predictions").EnumerateArray().Select(p => p.GetRawText()).ToArray();
        Assert.Equal(expected, predictions);
    }

    [Fact]
    public async Task Errors_are_KServe_errors()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["seg=seg.mar"]);
        var url = server.InferenceUrl.ToString().TrimEnd('/');
        (string[] Args, int Status, string Message)[] cases =
        [
            (["-X", "POST", "--data-binary", """{"instances": ["aGk="]}""", $"{url}/v1/models/nosuch:predict"], 404, "nosuch"),
            (["-X", "POST", "--data-binary", """{"instances": [{"data": "bm90IGFuIGltYWdl"}]}""", $"{url}/v1/models/seg:predict"], 400, "decodable image"),
            (["-X", "POST", "--data-binary", """{"instances": []}""", $"{url}/v1/models/seg:predict"], 400, "empty"),
            (["-X", "POST", "--data-binary", """{"rows": []}""", $"{url}/v1/models/seg:predict"], 400, "instances"),
            (["-X", "POST", "--data-binary", "{", $"{url}/v1/models/seg:predict"], 400, "not valid JSON"),
            (["-X", "POST", "--data-binary", """{"instances": ["aGk="]}""", $"{url}/v1/models/seg:explain"], 501, "explain"),
            ([$"{url}/v1/models/nosuch"], 404, "nosuch"),
        ];
        foreach (var (args, expectedStatus, message) in cases)
        {
            var (status, body) = ServerProcess.Curl(args);
            Assert.True(status == expectedStatus, $"{string.Join(' ', args)} → {status} {body}");
            Assert.Contains(message, JsonDocument.Parse(body).RootElement.GetProperty("error").GetString());
        }
    }

    [Fact]
    public async Task With_token_authorization_v1_and_v2_need_the_inference_key_and_health_does_not()
    {
        await using var server = ServerProcess.Start(store.NewWorkDir(), store.Store, ["--models", "seg=seg.mar", "--ncs"]);
        await server.WaitHealthyAsync();
        var url = server.InferenceUrl.TrimEnd('/');
        Assert.Equal(200, ServerProcess.Curl($"{url}/v2/health/live").Status);
        Assert.Equal(200, ServerProcess.Curl($"{url}/v2/health/ready").Status);
        foreach (var path in (string[])["/v1/models/seg", "/v2/models/seg", "/v2/models/seg/ready"])
        {
            var (status, body) = ServerProcess.Curl($"{url}{path}");
            Assert.True(status == 400, $"{path}: {status} {body}"); // TorchServe's InvalidKeyException
            Assert.Contains("Token Authorization failed", JsonDocument.Parse(body).RootElement.GetProperty("error").GetString());
            Assert.Equal(200, ServerProcess.Curl("-H", $"Authorization: Bearer {server.InferenceKey}", $"{url}{path}").Status);
        }
    }
}
