using System.Net;
using System.Text.Json;
using ServeSharp.Server.Configuration;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>The bounded queue, failures that stay local, errors, metrics, downloads — on a server hosted in-process.</summary>
[Collection("server")]
public sealed class WorkerBehaviourTests(ModelStoreFixture store) : IAsyncLifetime
{
    private InProcessServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await InProcessServer.StartAsync(store.Store, ["probe=probe.mar", "batcher=batcher.mar", "linear=linear.mar"],
            "job_queue_size=3\nmax_request_size=10000\nallowed_urls=http://127\\\\.0\\\\.0\\\\.1:\\\\d+/.*\\\\.mar");
        await _server.WaitReadyAsync("probe");
        await _server.WaitReadyAsync("batcher");
        await _server.WaitReadyAsync("linear");
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task A_burst_beyond_the_queue_gets_503_with_retry_after_and_nothing_is_lost()
    {
        using var inference = _server.Inference;
        // One worker, 600 ms per request, room for 3 in the queue: of 12 sent at once most must be refused.
        var responses = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => inference.PostAsync("/predictions/probe?sleep_ms=600", new StringContent("burst"))));
        var ok = responses.Count(r => r.StatusCode == HttpStatusCode.OK);
        var refused = responses.Where(r => r.StatusCode == HttpStatusCode.ServiceUnavailable).ToList();
        Assert.Equal(12, ok + refused.Count);
        Assert.InRange(ok, 1, 5);
        Assert.NotEmpty(refused);
        Assert.All(refused, r => Assert.Equal("1", r.Headers.RetryAfter?.ToString()));
        var error = JsonDocument.Parse(await refused[0].Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(503, error.GetProperty("code").GetInt32());
        Assert.Equal("ServiceUnavailableException", error.GetProperty("type").GetString());
        Assert.Contains("job queue is full", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task Failures_stay_with_their_request_and_their_model()
    {
        using var inference = _server.Inference;
        var failing = await inference.PostAsync("/predictions/probe?fail=1", new StringContent("x"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, failing.StatusCode);
        var error = JsonDocument.Parse(await failing.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("InternalServerException", error.GetProperty("type").GetString());
        Assert.Contains("Prediction failed", error.GetProperty("message").GetString());
        Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/probe", new StringContent("x"))).StatusCode);

        // A model whose handler cannot initialise fails its registration alone; the server keeps serving.
        using var management = _server.Management;
        var bad = await management.PostAsync("/models?url=badinit.mar&initial_workers=1&synchronous=true", null);
        Assert.Equal(HttpStatusCode.InternalServerError, bad.StatusCode);
        Assert.Contains("initialisation failed on purpose", await bad.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.NotFound, (await management.GetAsync("/models/badinit")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await inference.GetAsync("/ping")).StatusCode);
    }

    public static TheoryData<string, string, int, string> Errors => new()
    {
        { "POST", "/predictions/nosuchmodel", 404, "Model not found: nosuchmodel" },
        { "POST", "/predictions/probe/7.7", 404, "Model version 7.7 not found for model probe" },
        { "POST", "/models", 400, "Parameter url is required" },
        { "POST", "/models?url=nothere.mar", 404, "Model not found at: nothere.mar" },
        { "POST", "/models?url=../escape.mar", 404, "Relative path is not allowed in url: ../escape.mar" },
        { "POST", "/models?url=https://example.com/m.mar", 404, "Given URL https://example.com/m.mar does not match any allowed URL(s)" },
        { "POST", "/models?url=probe.mar", 409, "Model version 1.0 is already registered for model probe" },
        { "DELETE", "/models/nosuchmodel", 404, "Model not found: nosuchmodel" },
        { "PUT", "/models/probe/9.9/set-default", 404, "Model version 9.9 not found for model probe" },
    };

    [Theory]
    [MemberData(nameof(Errors))]
    public async Task Bad_requests_get_torchserve_error_json(string method, string path, int status, string message)
    {
        using var client = path.StartsWith("/predictions", StringComparison.Ordinal) ? _server.Inference : _server.Management;
        using var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path) { Content = new StringContent("x") });
        Assert.Equal(status, (int)response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(status, error.GetProperty("code").GetInt32());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("type").GetString()));
        Assert.Contains(message, error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task A_body_over_max_request_size_is_413()
    {
        using var inference = _server.Inference;
        var response = await inference.PostAsync("/predictions/probe", new ByteArrayContent(new byte[20_000]));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("max_request_size", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Metrics_count_the_predictions_sent_and_filter_by_name()
    {
        using var inference = _server.Inference;
        for (var i = 0; i < 5; i++)
            Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/linear", new ByteArrayContent("1,2,3"u8.ToArray()))).StatusCode);

        using var metrics = _server.Metrics;
        var text = await metrics.GetStringAsync("/metrics");
        Assert.Matches("""ts_inference_requests_total\{model_name="linear",model_version="default",hostname="[^"]+",protocol="torchserve_rest"\} 5\b""", text);
        Assert.Matches("""ts_inference_latency_microseconds\{model_name="linear",model_version="default",hostname="[^"]+",protocol="torchserve_rest"\} [0-9.e+]+""", text);
        Assert.Contains("ts_queue_latency_microseconds{model_name=\"linear\"", text);
        Assert.Contains("Requests2XX{Level=\"Host\"", text);
        Assert.Contains("HandlerTime{ModelName=\"linear\"", text);
        Assert.Contains("WorkerLoadTime{WorkerName=", text);

        var filtered = await metrics.GetStringAsync("/metrics?name[]=ts_inference_requests_total&name[]=Requests2XX");
        Assert.Contains("ts_inference_requests_total", filtered);
        Assert.Contains("Requests2XX", filtered);
        Assert.DoesNotContain("ts_queue_latency_microseconds", filtered);
    }

    [Fact]
    public async Task Registration_downloads_from_an_allowed_url_on_loopback()
    {
        using var listener = new HttpListener();
        var port = ServerProcess.FreePort();
        listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        listener.Start();
        var archive = await File.ReadAllBytesAsync(Path.Combine(store.Store, "linear.mar"));
        var serving = Task.Run(async () =>
        {
            var context = await listener.GetContextAsync();
            context.Response.ContentLength64 = archive.Length;
            await context.Response.OutputStream.WriteAsync(archive);
            context.Response.Close();
        });

        using var management = _server.Management;
        var fileName = $"downloaded-{Guid.NewGuid():N}.mar";
        var url = Uri.EscapeDataString($"http://127.0.0.1:{port}/{fileName}");
        var response = await management.PostAsync($"/models?url={url}&model_name=downloaded&initial_workers=1&synchronous=true", null);
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        await serving;
        using var inference = _server.Inference;
        var predicted = await inference.PostAsync("/predictions/downloaded", new ByteArrayContent("0,1,0"u8.ToArray()));
        Assert.StartsWith("0,1,0,-1;argmax=1", await predicted.Content.ReadAsStringAsync());
        // The snapshot remembers the downloaded file in the model store, so a restart does not download again.
        var snapshot = Directory.GetFiles(Path.Combine(_server.Directory, "logs", "config"), "*-snapshot.cfg").Order().Last();
        var models = JsonDocument.Parse(PropertiesFile.Parse(await File.ReadAllTextAsync(snapshot))["model_snapshot"]).RootElement.GetProperty("models");
        Assert.Equal(fileName, models.GetProperty("downloaded").GetProperty("1.0").GetProperty("marName").GetString());
        Assert.True(File.Exists(Path.Combine(store.Store, fileName)));
        Assert.Equal(HttpStatusCode.OK, (await management.DeleteAsync("/models/downloaded")).StatusCode);
    }

    [Fact]
    public async Task Api_description_answers_on_options_and_get()
    {
        using var inference = _server.Inference;
        var options = await inference.SendAsync(new HttpRequestMessage(HttpMethod.Options, "/"));
        var doc = JsonDocument.Parse(await options.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("3.0.1", doc.GetProperty("openapi").GetString());
        Assert.True(doc.GetProperty("paths").TryGetProperty("/predictions/{model_name}", out _));
        using var management = _server.Management;
        var described = JsonDocument.Parse(await management.GetStringAsync("/api-description")).RootElement;
        Assert.True(described.GetProperty("paths").TryGetProperty("/models/{model_name}/{model_version}/set-default", out _));
    }

    [Fact]
    public async Task Model_list_pages_with_limit_and_next_page_token()
    {
        using var management = _server.Management;
        var first = JsonDocument.Parse(await management.GetStringAsync("/models?limit=2")).RootElement;
        Assert.Equal(["batcher", "linear"], first.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("modelName").GetString()));
        Assert.Equal("2", first.GetProperty("nextPageToken").GetString());
        var second = JsonDocument.Parse(await management.GetStringAsync("/models?limit=2&next_page_token=2")).RootElement;
        Assert.Equal("probe", second.GetProperty("models")[0].GetProperty("modelName").GetString());
        Assert.False(second.TryGetProperty("nextPageToken", out _));
    }
}
