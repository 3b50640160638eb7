using System.Net;
using System.Text;
using System.Text.Json;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Deploy;

/// <summary>
/// KServe's v1 and OIP v2 on a listener of their own, while TorchServe's inference and management APIs share another
/// (KServe's config.properties puts them on 8085 and KServe sends its traffic to 8080).
/// </summary>
[Collection("worker-core")]
public sealed class KServeListenerTests(GateStoreFixture store)
{
    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    [Fact]
    public async Task The_kserve_listener_serves_v1_and_v2_and_torchserves_apis_stay_on_their_shared_port()
    {
        var shared = ServerProcess.FreePort();
        var kserve = ServerProcess.FreePort();
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"],
            $"inference_address=http://127.0.0.1:{shared}\nmanagement_address=http://127.0.0.1:{shared}\nkserve_address=http://127.0.0.1:{kserve}",
            handlers: GateHandler.BuiltIn);
        Assert.Equal(new Uri($"http://127.0.0.1:{kserve}"), server.KServeUrl);
        await server.WaitReadyAsync("gate");

        using var k = server.KServe;
        Assert.Equal(HttpStatusCode.OK, (await k.GetAsync("/v2/health/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await k.GetAsync("/v2/health/live")).StatusCode);
        Assert.Contains("gate", await k.GetStringAsync("/v1/models"));
        using (var v1 = await k.PostAsync("/v1/models/gate:predict", Json("""{"instances": ["hello", "world"]}""")))
        {
            Assert.Equal(HttpStatusCode.OK, v1.StatusCode);
            var predictions = JsonDocument.Parse(await v1.Content.ReadAsStringAsync()).RootElement.GetProperty("predictions");
            Assert.Equal(2, predictions.GetArrayLength());
            Assert.Contains("world", predictions[1].GetRawText());
        }
        using (var v2 = await k.PostAsync("/v2/models/gate/infer", Json("""{"id": "7", "inputs": [{"name": "data", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}""")))
        {
            Assert.Equal(HttpStatusCode.OK, v2.StatusCode);
            var answer = JsonDocument.Parse(await v2.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal("7", answer.GetProperty("id").GetString());
            Assert.Equal("output", answer.GetProperty("outputs")[0].GetProperty("name").GetString());
        }
        // Only KServe's protocols (and /ping) on KServe's port: TorchServe's routes answer on theirs.
        Assert.Equal(HttpStatusCode.NotFound, (await k.PostAsync("/predictions/gate", new StringContent("x"))).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await k.GetAsync("/models")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await k.GetAsync("/ping")).StatusCode); // the image's HEALTHCHECK asks 8080 in every layout
        using var ts = server.Inference;
        Assert.Equal(HttpStatusCode.OK, (await ts.PostAsync("/predictions/gate", new StringContent("x"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await ts.GetAsync("/models/gate")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await ts.GetAsync("/v2/health/ready")).StatusCode);
    }

    [Fact]
    public async Task With_token_authorization_on_the_kserve_listener_wants_the_inference_key()
    {
        var kserve = ServerProcess.FreePort();
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"],
            $"disable_token_authorization=false\nkserve_address=http://127.0.0.1:{kserve}", handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate", managementKey: Keys(server).Management);
        using var k = server.KServe;
        Assert.Equal(HttpStatusCode.OK, (await k.GetAsync("/v2/health/ready")).StatusCode); // health is open
        var body = """{"instances": ["x"]}""";
        Assert.Equal(HttpStatusCode.BadRequest, (await k.PostAsync("/v1/models/gate:predict", Json(body))).StatusCode);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/models/gate:predict") { Content = Json(body) };
        request.Headers.Authorization = new("Bearer", Keys(server).Inference);
        Assert.Equal(HttpStatusCode.OK, (await k.SendAsync(request)).StatusCode);
    }

    [Fact]
    public async Task A_kserve_listener_that_collides_with_another_is_refused_naming_both_settings()
    {
        var port = ServerProcess.FreePort();
        var e = await Assert.ThrowsAsync<FormatException>(() => InProcessServer.StartAsync(store.Store, [],
            $"inference_address=http://127.0.0.1:{port}\nkserve_address=http://0.0.0.0:{port}", handlers: GateHandler.BuiltIn));
        Assert.Contains("inference_address", e.Message);
        Assert.Contains("kserve_address", e.Message);
        Assert.Contains("8085", e.Message); // the way out KServe's own configuration takes
    }

    private static (string Inference, string Management) Keys(InProcessServer server)
    {
        using var keys = JsonDocument.Parse(File.ReadAllText(Path.Combine(server.Directory, "key_file.json")));
        return (keys.RootElement.GetProperty("inference").GetProperty("key").GetString()!, keys.RootElement.GetProperty("management").GetProperty("key").GetString()!);
    }
}
