using System.Text.Json;
using Org.Pytorch.Serve.Grpc.Management;
using ServeSharp.Tests.Grpc;
using ServeSharp.Tests.Support;
using static ServeSharp.Tests.Server.ManagementFidelityTests;

namespace ServeSharp.Tests.Server;

/// <summary>
/// Describe as TorchServe prints it (DescribeModelResponse: every field, in its order, with its JSON types), and
/// <c>?customized=true</c>, which runs the handler's describe hook on a worker as a job of its own.
/// </summary>
[Collection("management")]
public sealed class DescribeTests(ManagementStoreFixture store)
{
    // TorchServe's fields in its order (Gson leaves out engine, status and metrics, which it never sets), then ServeSharp's.
    private static readonly (string Name, JsonValueKind Kind)[] Fields =
    [
        ("modelName", JsonValueKind.String), ("modelVersion", JsonValueKind.String), ("modelUrl", JsonValueKind.String),
        ("runtime", JsonValueKind.String), ("minWorkers", JsonValueKind.Number), ("maxWorkers", JsonValueKind.Number),
        ("batchSize", JsonValueKind.Number), ("maxBatchDelay", JsonValueKind.Number), ("responseTimeout", JsonValueKind.Number),
        ("startupTimeout", JsonValueKind.Number), ("maxRetryTimeoutInSec", JsonValueKind.Number), ("clientTimeoutInMills", JsonValueKind.Number),
        ("parallelType", JsonValueKind.String), ("parallelLevel", JsonValueKind.Number), ("deviceType", JsonValueKind.String),
        ("continuousBatching", JsonValueKind.False), ("useJobTicket", JsonValueKind.False), ("useVenv", JsonValueKind.False),
        ("stateful", JsonValueKind.False), ("sequenceMaxIdleMSec", JsonValueKind.Number), ("sequenceTimeoutMSec", JsonValueKind.Number),
        ("maxNumSequence", JsonValueKind.Number), ("maxSequenceJobQueueSize", JsonValueKind.Number), ("loadedAtStartup", JsonValueKind.False),
        ("workers", JsonValueKind.Array), ("jobQueueStatus", JsonValueKind.Object),
        ("handler", JsonValueKind.String), ("isDefault", JsonValueKind.True), ("jobQueueSize", JsonValueKind.Number),
        ("state", JsonValueKind.String), ("consecutiveFailures", JsonValueKind.Number),
    ];

    [Fact]
    public async Task Describe_prints_torchserves_fields_in_its_order_with_its_types()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, handlers: GateHandler.BuiltIn);
        using var m = server.Management;
        Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=tiny.mar")).Status);
        var tiny = await DescribeAsync(m, "/models/tiny");
        Assert.Equal(Fields.Select(f => f.Name), tiny.EnumerateObject().Select(p => p.Name));
        Assert.All(Fields, f => Assert.True(tiny.GetProperty(f.Name).ValueKind == f.Kind, $"{f.Name} is {tiny.GetProperty(f.Name).ValueKind}"));
        Assert.Equal((120, 300L, 0L, "", 0, "cpu", 100), (tiny.GetProperty("startupTimeout").GetInt32(), tiny.GetProperty("maxRetryTimeoutInSec").GetInt64(),
            tiny.GetProperty("clientTimeoutInMills").GetInt64(), tiny.GetProperty("parallelType").GetString(), tiny.GetProperty("parallelLevel").GetInt32(),
            tiny.GetProperty("deviceType").GetString(), tiny.GetProperty("jobQueueSize").GetInt32()));
        Assert.Equal(["remainingCapacity", "pendingRequests"], tiny.GetProperty("jobQueueStatus").EnumerateObject().Select(p => p.Name));

        // A worker: TorchServe's fields first.
        Assert.Equal(200, (await SendAsync(m, "PUT", "/models/tiny?min_worker=1&synchronous=true")).Status);
        var worker = (await DescribeAsync(m, "/models/tiny")).GetProperty("workers")[0];
        Assert.Equal(["id", "startTime", "status", "memoryUsage", "pid", "gpu", "gpuUsage"], worker.EnumerateObject().Select(p => p.Name).Take(7));
    }

    [Fact]
    public async Task Describe_shows_the_torchserve_keys_of_model_config_yaml_and_its_job_queue_size()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, handlers: GateHandler.BuiltIn);
        using var m = server.Management;
        Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=keys.mar")).Status);
        var keys = await DescribeAsync(m, "/models/keys");
        Assert.Equal((500L, true, "pp", 2, 60L, 30, true), (keys.GetProperty("clientTimeoutInMills").GetInt64(), keys.GetProperty("useJobTicket").GetBoolean(),
            keys.GetProperty("parallelType").GetString(), keys.GetProperty("parallelLevel").GetInt32(), keys.GetProperty("maxRetryTimeoutInSec").GetInt64(),
            keys.GetProperty("startupTimeout").GetInt32(), keys.GetProperty("continuousBatching").GetBoolean()));
        // jobQueueSize in model-config.yaml sizes this model's queue, as in TorchServe.
        Assert.Equal(7, keys.GetProperty("jobQueueSize").GetInt32());
        Assert.Equal(7, keys.GetProperty("jobQueueStatus").GetProperty("remainingCapacity").GetInt32());
    }

    [Fact]
    public async Task Customized_describe_runs_the_handlers_describe_hook_in_its_worker_process()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["described=described.mar"]);
        await server.WaitReadyAsync("described");
        using var m = server.Management;
        var plain = await DescribeAsync(m, "/models/described");
        Assert.False(plain.TryGetProperty("customizedMetadata", out _));
        Assert.Equal("process", plain.GetProperty("workers")[0].GetProperty("isolation").GetString());

        var customized = await DescribeAsync(m, "/models/described?customized=true");
        var metadata = customized.GetProperty("customizedMetadata");
        Assert.Equal(["sky", "road", "building"], metadata.GetProperty("classes").EnumerateArray().Select(c => c.GetString()));
        Assert.Equal(("procedural street scenes", 224, "1.0"), (metadata.GetProperty("trainedOn").GetString(), metadata.GetProperty("inputSize").GetInt32(), metadata.GetProperty("version").GetString()));
        // The rest of the answer is the plain description; "all" ignores customized, as TorchServe does.
        Assert.Equal(plain.GetProperty("modelUrl").GetString(), customized.GetProperty("modelUrl").GetString());
        Assert.False((await DescribeAsync(m, "/models/described/all?customized=true")).TryGetProperty("customizedMetadata", out _));

        // The worker serves predictions as before.
        using var inference = server.Inference;
        Assert.Equal("echo:hello", await (await inference.PostAsync("/predictions/described", new StringContent("hello"))).Content.ReadAsStringAsync());

        // gRPC's DescribeModel with customized = true answers the same metadata.
        using var grpc = new GrpcClients(server.GrpcInferenceUrl, server.GrpcManagementUrl);
        var described = await grpc.Management.DescribeModelAsync(new DescribeModelRequest { ModelName = "described", Customized = true }, GrpcClients.Safe());
        Assert.Equal("procedural street scenes", JsonDocument.Parse(described.Msg).RootElement[0].GetProperty("customizedMetadata").GetProperty("trainedOn").GetString());
    }

    [Fact]
    public async Task A_handler_without_a_describe_hook_adds_nothing()
    {
        // linear_handler.cs has no Describe hook (image_segmenter has one: its preset and class-head state).
        await using var server = await InProcessServer.StartAsync(store.Store, ["linear=linear.mar"], properties: "default_workers_per_model=1");
        await server.WaitReadyAsync("linear");
        using var m = server.Management;
        var linear = await DescribeAsync(m, "/models/linear?customized=true");
        Assert.False(linear.TryGetProperty("customizedMetadata", out _));
        Assert.True(linear.GetProperty("loadedAtStartup").GetBoolean());
    }

    [Fact]
    public async Task A_describe_job_is_never_batched_with_predictions()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var inference = server.Inference;
        using var m = server.Management;

        // The one worker is held in the handler, so what comes next waits in the queue, in order.
        var key = Guid.NewGuid().ToString("N");
        var held = inference.PostAsync($"/predictions/gate?block={key}", new StringContent("held"));
        await GateHandler.Entered(key).WaitAsync(TimeSpan.FromSeconds(60));
        var first = inference.PostAsync("/predictions/gate", new StringContent("a"));
        var second = inference.PostAsync("/predictions/gate", new StringContent("b"));
        await WaitPendingAsync(m, 2);
        var describe = SendAsync(m, "GET", "/models/gate?customized=true");
        await WaitPendingAsync(m, 3);

        // batchSize 4, maxBatchDelay 5 s: the describe job closes the batch of two at once, then runs alone.
        GateHandler.Gate(key).TrySetResult();
        await held;
        var batches = await Task.WhenAll(Batch(first), Batch(second));
        Assert.Equal([2, 2], batches);
        var (status, body) = await describe;
        Assert.Equal(200, status);
        Assert.Equal(1, JsonDocument.Parse(body).RootElement[0].GetProperty("customizedMetadata").GetProperty("batch").GetInt32());
    }

    private static async Task<int> Batch(Task<HttpResponseMessage> prediction)
    {
        using var response = await prediction;
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("batch").GetInt32();
    }

    // Bounded: a safety net for a queue that never fills, not a timing assumption.
    private static async Task WaitPendingAsync(HttpClient m, int pending)
    {
        for (var i = 0; i < 1200; i++)
        {
            if ((await DescribeAsync(m, "/models/gate")).GetProperty("jobQueueStatus").GetProperty("pendingRequests").GetInt32() == pending) return;
            await Task.Delay(50);
        }
        Assert.Fail($"the queue never held {pending} requests");
    }
}
