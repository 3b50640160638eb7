using System.Net;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>
/// The worker core on the real in-process host: one aggregator per model, the lifecycle (unregister and scale under
/// load), back-off after failed loads, cancellation by responseTimeout and by clients that leave. Batching and timeouts
/// run on a fake clock, so nothing here depends on how fast the machine is; waits on real time are safety nets that
/// fail a hung test, never assertions about speed.
/// </summary>
[Collection("worker-core")]
public sealed class WorkerCoreTests(GateStoreFixture store)
{
    private static readonly TimeSpan Safety = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Four_concurrent_requests_with_two_workers_make_one_batch_of_four_that_starts_at_once()
    {
        var time = new FakeTimeProvider();
        await using var server = await InProcessServer.StartAsync(store.Store, ["batch4=batch4.mar"], time: time, handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("batch4", workers: 2);
        using var inference = server.Inference;

        // The clock never moves: a batch that waited for maxBatchDelay (3 s) would never be answered.
        var four = await PostAllAsync(inference, 4, i => $"/predictions/batch4?i={i}");
        Assert.All(four, d => Assert.Equal(4, d.GetProperty("batch").GetInt32()));
        Assert.Single(four.Select(d => d.GetProperty("call").GetInt32()).Distinct());

        var eight = await PostAllAsync(inference, 8, i => $"/predictions/batch4?i={i}");
        Assert.All(eight, d => Assert.Equal(4, d.GetProperty("batch").GetInt32()));
        Assert.Equal(2, eight.Select(d => d.GetProperty("call").GetInt32()).Distinct().Count());

        using var metrics = server.Metrics;
        var text = await metrics.GetStringAsync("/metrics?name[]=ts_batch_size");
        Assert.Matches("""ts_batch_size_bucket\{model_name="batch4",model_version="1.0",hostname="[^"]+",le="3"\} 0\b""", text);
        Assert.Matches("""ts_batch_size_bucket\{model_name="batch4",model_version="1.0",hostname="[^"]+",le="4"\} 3\b""", text);
    }

    [Fact]
    public async Task Unregister_while_eight_clients_send_answers_every_request_and_the_model_registers_again_at_once()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, handlers: GateHandler.BuiltIn);
        using var management = server.Management;
        Assert.Equal(HttpStatusCode.OK, (await management.PostAsync("/models?url=gate.mar&model_name=drain&initial_workers=2&batch_size=2&max_batch_delay=50&synchronous=true", null)).StatusCode);

        using var inference = server.Inference;
        var progress = new StrongBox<int>();
        var clients = Enumerable.Range(0, 8).Select(_ => SendAsync(inference, "/predictions/drain?sleep_ms=20", progress, untilGone: true, CancellationToken.None)).ToArray();
        await UnderWayAsync(progress, 16);
        var unregistered = await management.DeleteAsync("/models/drain").WaitAsync(Safety);
        Assert.Equal(HttpStatusCode.OK, unregistered.StatusCode);
        var answers = (await Task.WhenAll(clients).WaitAsync(Safety)).SelectMany(a => a).ToList();

        Assert.Contains(answers, a => a.Status == 200);
        Assert.Contains(answers, a => a.Status == 404);
        foreach (var (status, body) in answers.Where(a => a.Status != 200))
        {
            Assert.Contains(status, new[] { 404, 503 });
            var error = JsonDocument.Parse(body).RootElement;
            Assert.Equal(status, error.GetProperty("code").GetInt32());
            Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        }

        Assert.Equal(HttpStatusCode.OK, (await management.PostAsync("/models?url=gate.mar&model_name=drain&initial_workers=1&synchronous=true", null)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/drain", new StringContent("again"))).StatusCode);
    }

    [Fact]
    public async Task Scaling_two_to_zero_to_two_under_load_loses_nothing_and_refuses_cleanly_in_between()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, handlers: GateHandler.BuiltIn);
        using var management = server.Management;
        Assert.Equal(HttpStatusCode.OK, (await management.PostAsync("/models?url=gate.mar&model_name=scaled&initial_workers=2&synchronous=true", null)).StatusCode);
        using var inference = server.Inference;
        using var stop = new CancellationTokenSource();
        var progress = new StrongBox<int>();
        var clients = Enumerable.Range(0, 4).Select(_ => SendAsync(inference, "/predictions/scaled?sleep_ms=10", progress, untilGone: false, stop.Token)).ToArray();

        await UnderWayAsync(progress, 8);
        Assert.Equal(HttpStatusCode.OK, (await management.PutAsync("/models/scaled?min_worker=0&synchronous=true", null).WaitAsync(Safety)).StatusCode);
        Assert.Equal(0, (await DescribeAsync(management, "scaled")).GetProperty("workers").GetArrayLength());
        var refused = await inference.PostAsync("/predictions/scaled", new StringContent("x"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.Contains("has no worker to serve inference request", await refused.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.OK, (await management.PutAsync("/models/scaled?min_worker=2&synchronous=true", null).WaitAsync(Safety)).StatusCode);
        var scaledBack = Volatile.Read(ref progress.Value);
        await UnderWayAsync(progress, scaledBack + 8);
        stop.Cancel();
        var answers = (await Task.WhenAll(clients).WaitAsync(Safety)).SelectMany(a => a).ToList();
        Assert.All(answers, a => Assert.True(a.Status is 200 or 503, $"{a.Status}: {a.Body}"));
        Assert.Contains(answers, a => a.Status == 200);
        Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/scaled", new StringContent("x"))).StatusCode);
        var workers = (await DescribeAsync(management, "scaled")).GetProperty("workers");
        Assert.Equal(2, workers.EnumerateArray().Count(w => w.GetProperty("status").GetString() == "READY"));
    }

    [Fact]
    public async Task A_handler_that_fails_to_initialise_is_retried_with_back_off_and_describe_shows_it()
    {
        var time = new FakeTimeProvider();
        await using var server = await InProcessServer.StartAsync(store.Store, time: time, handlers: GateHandler.BuiltIn);
        using var management = server.Management;
        Assert.Equal(HttpStatusCode.Accepted, (await management.PostAsync("/models?url=flaky.mar&synchronous=false", null)).StatusCode);

        // The first load fails, the retry after 0 s fails too; the next waits 1 s of back-off, on the fake clock.
        var described = await PollAsync(() => DescribeAsync(management, "flaky"), d => d.GetProperty("consecutiveFailures").GetInt32() == 2);
        Assert.Equal("FAILED", described.GetProperty("state").GetString());
        var worker = Assert.Single(described.GetProperty("workers").EnumerateArray());
        Assert.Equal("FAILED", worker.GetProperty("status").GetString());
        Assert.Contains("initialisation 2 failed on purpose", worker.GetProperty("error").GetString());
        using var inference = server.Inference;
        var refused = await inference.PostAsync("/predictions/flaky", new StringContent("x"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.Equal(2, GateHandler.InitAttemptsOf("flaky"));

        time.Advance(TimeSpan.FromSeconds(1));
        await server.WaitReadyAsync("flaky");
        Assert.Equal(3, GateHandler.InitAttemptsOf("flaky"));
        described = await DescribeAsync(management, "flaky");
        Assert.Equal("READY", described.GetProperty("state").GetString());
        Assert.Equal(0, described.GetProperty("consecutiveFailures").GetInt32());
        Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/flaky", new StringContent("x"))).StatusCode);
    }

    [Fact]
    public async Task A_request_that_fails_in_a_batch_fails_alone()
    {
        var time = new FakeTimeProvider();
        await using var server = await InProcessServer.StartAsync(store.Store, ["seg=seg.mar"], time: time);
        await server.WaitReadyAsync("seg");
        using var inference = server.Inference;
        var png = Images.SolidPng(16, 12, 200, 10, 10);
        var bodies = new[] { png, png, "not an image"u8.ToArray(), png };
        var responses = await Task.WhenAll(bodies.Select(b => inference.PostAsync("/predictions/seg", new ByteArrayContent(b)))).WaitAsync(Safety);

        Assert.Equal([200, 200, 400, 200], responses.Select(r => (int)r.StatusCode));
        var error = JsonDocument.Parse(await responses[2].Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(400, error.GetProperty("code").GetInt32());
        var summary = JsonDocument.Parse(await responses[0].Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(JsonValueKind.Object, summary.ValueKind);
        using var metrics = server.Metrics;
        Assert.Matches("""ts_batch_size_bucket\{model_name="seg",model_version="1.0",hostname="[^"]+",le="4"\} 1\b""", await metrics.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task A_request_over_response_timeout_gets_json_in_time_its_work_is_cancelled_and_the_worker_serves_the_next()
    {
        var time = new FakeTimeProvider();
        var (server, before) = await StartOneWorkerAsync("timeout", time);
        await using var _ = server;
        using var management = server.Management;

        using var inference = server.Inference;
        var key = Guid.NewGuid().ToString("N");
        var slow = inference.PostAsync($"/predictions/timeout?block={key}", new StringContent("slow"));
        await GateHandler.Entered(key).WaitAsync(Safety);
        time.Advance(TimeSpan.FromSeconds(2));

        var answer = await slow.WaitAsync(Safety);
        Assert.Equal(HttpStatusCode.InternalServerError, answer.StatusCode);
        var error = JsonDocument.Parse(await answer.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("InternalServerException", error.GetProperty("type").GetString());
        Assert.Contains("did not answer within 2s", error.GetProperty("message").GetString());
        await GateHandler.Cancelled(key).WaitAsync(Safety);

        var next = await inference.PostAsync("/predictions/timeout", new StringContent("fast")).WaitAsync(Safety);
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        var worker = Assert.Single((await DescribeAsync(management, "timeout")).GetProperty("workers").EnumerateArray());
        Assert.Equal(before, worker.GetProperty("id").GetString());
        Assert.Equal("READY", worker.GetProperty("status").GetString());
    }

    [Fact]
    public async Task A_handler_that_ignores_cancellation_is_abandoned_and_replaced_so_the_pool_keeps_min_workers()
    {
        var time = new FakeTimeProvider();
        var (server, before) = await StartOneWorkerAsync("timeout", time);
        await using var _ = server;
        using var management = server.Management;
        using var inference = server.Inference;
        var key = Guid.NewGuid().ToString("N");
        try
        {
            var stuck = inference.PostAsync($"/predictions/timeout?stuck={key}", new StringContent("stuck"));
            await GateHandler.Entered(key).WaitAsync(Safety);
            time.Advance(TimeSpan.FromSeconds(2));
            Assert.Equal(HttpStatusCode.InternalServerError, (await stuck.WaitAsync(Safety)).StatusCode);

            time.Advance(TimeSpan.FromSeconds(5)); // the grace period: the handler has not returned, so its worker is given up
            var described = await PollAsync(() => DescribeAsync(management, "timeout"), d =>
                d.GetProperty("workers").EnumerateArray().Any(w => w.GetProperty("status").GetString() == "READY" && w.GetProperty("id").GetString() != before));
            Assert.DoesNotContain(described.GetProperty("workers").EnumerateArray(), w => w.GetProperty("id").GetString() == before);
            Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/timeout", new StringContent("next")).WaitAsync(Safety)).StatusCode);
        }
        finally
        {
            GateHandler.Gate(key).TrySetResult(); // let the abandoned thread end
        }
    }

    [Fact]
    public async Task A_client_that_disconnects_mid_request_cancels_its_work_and_the_worker_serves_the_next()
    {
        var (server, before) = await StartOneWorkerAsync("gate", null);
        await using var _ = server;
        using var management = server.Management;
        using var inference = server.Inference;
        var key = Guid.NewGuid().ToString("N");
        using var client = new CancellationTokenSource();
        var request = inference.PostAsync($"/predictions/gate?block={key}", new StringContent("leaving"), client.Token);
        await GateHandler.Entered(key).WaitAsync(Safety);
        client.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);

        await GateHandler.Cancelled(key).WaitAsync(Safety);
        Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/gate", new StringContent("next")).WaitAsync(Safety)).StatusCode);
        var worker = Assert.Single((await DescribeAsync(management, "gate")).GetProperty("workers").EnumerateArray());
        Assert.Equal(before, worker.GetProperty("id").GetString());
    }

    [Fact]
    public async Task A_queued_request_whose_client_left_is_dropped_without_running()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var inference = server.Inference;
        var key = Guid.NewGuid().ToString("N");
        var busy = inference.PostAsync($"/predictions/gate?block={key}", new StringContent("first"));
        await GateHandler.Entered(key).WaitAsync(Safety);
        var queuedKey = Guid.NewGuid().ToString("N");
        using var client = new CancellationTokenSource();
        var queued = inference.PostAsync($"/predictions/gate?block={queuedKey}", new StringContent("queued"), client.Token);
        using var management = server.Management;
        await PollAsync(async () => (await DescribeAsync(management, "gate")).GetProperty("jobQueueStatus"), q => q.GetProperty("pendingRequests").GetInt32() == 1);
        client.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued);
        // The server has seen the client go once it has answered the request (499, counted in Requests4XX).
        using var metrics = server.Metrics;
        await PollAsync(() => metrics.GetStringAsync("/metrics?name[]=Requests4XX"), t => t.Contains("Requests4XX{", StringComparison.Ordinal));

        GateHandler.Gate(key).TrySetResult();
        Assert.Equal(HttpStatusCode.OK, (await busy.WaitAsync(Safety)).StatusCode);
        var next = JsonDocument.Parse(await (await inference.PostAsync("/predictions/gate", new StringContent("next")).WaitAsync(Safety)).Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("next", next.GetProperty("body").GetString());
        Assert.False(GateHandler.Entered(queuedKey).IsCompleted, "the request whose client left ran anyway");
    }

    // A server with one model of one READY worker (the handler the tests control), and that worker's id.
    private async Task<(InProcessServer Server, string? WorkerId)> StartOneWorkerAsync(string model, TimeProvider? time)
    {
        var server = await InProcessServer.StartAsync(store.Store, [$"{model}={model}.mar"], time: time, handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync(model);
        using var management = server.Management;
        return (server, (await DescribeAsync(management, model)).GetProperty("workers")[0].GetProperty("id").GetString());
    }

    internal static async Task<JsonElement> DescribeAsync(HttpClient management, string model)
    {
        var response = await management.GetAsync($"/models/{model}");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement[0];
    }

    private static async Task<JsonElement[]> PostAllAsync(HttpClient client, int count, Func<int, string> path)
    {
        var responses = await Task.WhenAll(Enumerable.Range(0, count).Select(i => client.PostAsync(path(i), new StringContent($"r{i}")))).WaitAsync(Safety);
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        return await Task.WhenAll(responses.Select(async r => JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement));
    }

    // A client sending one request after another until stop (or, with untilGone, until the model answers 404); every
    // answer is kept and counted in progress, so a test can wait for the load to be under way.
    private static async Task<List<(int Status, string Body)>> SendAsync(HttpClient client, string path, StrongBox<int> progress, bool untilGone, CancellationToken stop)
    {
        var answers = new List<(int, string)>();
        for (var i = 0; i < 100_000 && !stop.IsCancellationRequested; i++)
        {
            var response = await client.PostAsync(path, new StringContent("x"), CancellationToken.None);
            answers.Add(((int)response.StatusCode, await response.Content.ReadAsStringAsync(CancellationToken.None)));
            Interlocked.Increment(ref progress.Value);
            if (untilGone && response.StatusCode == HttpStatusCode.NotFound) break;
        }
        return answers;
    }

    private static Task UnderWayAsync(StrongBox<int> progress, int answers) => PollAsync(() => Task.FromResult(Volatile.Read(ref progress.Value)), n => n >= answers);

    // Polls on real time until the condition holds: a bounded wait for background work, not a statement about speed.
    private static async Task<T> PollAsync<T>(Func<Task<T>> read, Func<T, bool> done)
    {
        var last = default(T)!;
        for (var i = 0; i < 1200; i++)
        {
            last = await read();
            if (done(last)) return last;
            await Task.Delay(25);
        }
        Assert.Fail($"condition not reached; last value: {last}");
        return last;
    }
}
