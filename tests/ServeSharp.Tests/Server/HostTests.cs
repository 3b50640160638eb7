using System.Net;
using System.Text.Json;
using ServeSharp.Server.Wlm;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>One host, three APIs: each route answers on its own listener, equal addresses share one, and every
/// error — 404 and 405 from routing included — is TorchServe's JSON.</summary>
[Collection("worker-core")]
public sealed class HostTests(GateStoreFixture store)
{
    public static TheoryData<string, string, string, int, string> Refusals => new()
    {
        { "inference", "GET", "/no/such/path", 404, "ResourceNotFoundException" },
        { "inference", "GET", "/predictions/gate", 405, "MethodNotAllowedException" },
        { "inference", "GET", "/models", 404, "ResourceNotFoundException" },
        { "management", "POST", "/predictions/gate", 404, "ResourceNotFoundException" },
        { "management", "PATCH", "/models", 405, "MethodNotAllowedException" },
        { "metrics", "GET", "/ping", 404, "ResourceNotFoundException" },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task Unknown_paths_and_methods_and_other_apis_routes_get_torchserve_json(string api, string method, string path, int status, string type)
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], handlers: GateHandler.BuiltIn);
        using var client = api switch { "inference" => server.Inference, "management" => server.Management, _ => server.Metrics };
        using var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
        Assert.Equal(status, (int)response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(status, error.GetProperty("code").GetInt32());
        Assert.Equal(type, error.GetProperty("type").GetString());
        Assert.Contains(path, error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task Equal_inference_and_management_addresses_share_one_listener_serving_both()
    {
        var port = ServerProcess.FreePort();
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"],
            $"inference_address=http://127.0.0.1:{port}\nmanagement_address=http://127.0.0.1:{port}", handlers: GateHandler.BuiltIn);
        Assert.Equal(server.InferenceUrl, server.ManagementUrl);
        await server.WaitReadyAsync("gate");
        using var client = server.Inference;
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/predictions/gate", new StringContent("x"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/models")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/ping")).StatusCode);
        using var metrics = server.Metrics;
        Assert.NotEqual(server.InferenceUrl, server.MetricsUrl);
        Assert.Equal(HttpStatusCode.NotFound, (await metrics.GetAsync("/models")).StatusCode);
    }

    [Theory]
    [InlineData(2, 2, null, 1)]
    [InlineData(16, 4, null, 4)]
    [InlineData(2, 5, null, 1)]
    [InlineData(8, 3, null, 2)]
    [InlineData(2, 4, 3, 3)]
    public void Intra_op_threads_are_the_cores_shared_by_every_planned_worker_unless_the_model_says(int cores, int workers, int? modelOverride, int expected) =>
        Assert.Equal(expected, ThreadPlanner.IntraOpThreads(cores, workers, modelOverride));

    [Fact]
    public void Back_off_follows_torchserve_and_stops_growing_at_its_last_step()
    {
        Assert.Equal([0, 1, 1, 2, 3, 5, 8], Enumerable.Range(0, 7).Select(i => (int)WorkLoadManager.BackOffAfter(i).TotalSeconds));
        Assert.Equal(WorkLoadManager.BackOffAfter(17), WorkLoadManager.BackOffAfter(1000));
    }
}
