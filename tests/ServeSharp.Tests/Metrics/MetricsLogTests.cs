using System.Net;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Time.Testing;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Metrics;

/// <summary>metrics_mode=log: TorchServe's metric lines in ts_metrics.log and model_metrics.log, the system ones per collection tick.</summary>
[Collection("worker-core")]
public sealed class MetricsLogTests(GateStoreFixture store)
{
    private const string Stamp = @"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3}";
    private static readonly string Host = Regex.Escape(Environment.MachineName);

    [Fact]
    public async Task Log_mode_writes_TorchServes_lines_for_requests_and_for_each_system_metrics_tick()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero));
        var started = time.GetUtcNow().ToUnixTimeSeconds();
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], "metrics_mode=log\nmetric_time_interval=30", time, GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var inference = server.Inference;
        using var response = await inference.PostAsync("/predictions/gate", new StringContent("x"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        // "%d{ISO8601} - Name.Unit:value|#Dimension:value,...|#hostname:host,timestamp:seconds", as TorchServe's LogMetric.
        string Line(string metric, string dimensions, long at) => $@"^{Stamp} - {metric}\|#{dimensions}\|#hostname:{Host},timestamp:{at}$";
        var log = await server.WaitForLogAsync("ts_metrics.log", t => t.Contains("ts_inference_latency_microseconds", StringComparison.Ordinal));
        Assert.Matches(new Regex(Line(@"ts_inference_requests_total\.Count:1\.0", "model_name:gate,model_version:default,protocol:torchserve_rest", started), RegexOptions.Multiline), log);
        Assert.Matches(new Regex(Line(@"ts_inference_latency_microseconds\.Microseconds:\d+\.\d+", "model_name:gate,model_version:default,protocol:torchserve_rest", started), RegexOptions.Multiline), log);
        Assert.Matches(new Regex(Line(@"QueueTime\.Milliseconds:0\.0", "Level:Host", started), RegexOptions.Multiline), log);
        Assert.Matches(new Regex(Line(@"WorkerLoadTime\.Milliseconds:\d+\.\d+", @"WorkerName:W-\d+-gate_1\.0,Level:Host", started), RegexOptions.Multiline), log);
        log = await server.WaitForLogAsync("ts_metrics.log", t => t.Contains("Requests2XX", StringComparison.Ordinal));
        Assert.Matches(new Regex(Line(@"Requests2XX\.Count:1\.0", "Level:Host", started), RegexOptions.Multiline), log);

        // Model metrics carry the requests they were measured on.
        var modelLog = await server.WaitForLogAsync("model_metrics.log", t => t.Contains("PredictionTime", StringComparison.Ordinal));
        Assert.Matches(new Regex($@"^{Stamp} - HandlerTime\.ms:\d+\.\d+\|#ModelName:gate,Level:Model\|#hostname:{Host},requestID:[^,|]+,timestamp:{started}$", RegexOptions.Multiline), modelLog);

        // System metrics: one collection at start, the next after metric_time_interval on the server's clock.
        var cpu = new Regex(@$"^{Stamp} - CPUUtilization\.Percent:\d+\.\d+\|#Level:Host\|#hostname:{Host},timestamp:(\d+)$", RegexOptions.Multiline);
        Assert.Equal([started.ToString(System.Globalization.CultureInfo.InvariantCulture)], cpu.Matches(server.LogFile("ts_metrics.log")).Select(m => m.Groups[1].Value));
        foreach (var name in (string[])[@"MemoryUsed\.Megabytes", @"MemoryAvailable\.Megabytes", @"MemoryUtilization\.Percent", @"DiskUsage\.Gigabytes", @"DiskAvailable\.Gigabytes", @"DiskUtilization\.Percent"])
            Assert.Matches(new Regex(Line($@"{name}:[0-9.E-]+", "Level:Host", started), RegexOptions.Multiline), server.LogFile("ts_metrics.log"));
        time.Advance(TimeSpan.FromSeconds(29));
        Assert.Single(cpu.Matches(server.LogFile("ts_metrics.log")));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal([started, started + 30], cpu.Matches(server.LogFile("ts_metrics.log")).Select(m => long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)));
    }

    [Fact]
    public async Task Prometheus_mode_writes_no_metric_lines_and_the_metrics_api_still_answers()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], "metrics_mode=prometheus", handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var inference = server.Inference;
        Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/gate", new StringContent("x"))).StatusCode);
        using var metrics = server.Metrics;
        Assert.Contains("ts_inference_requests_total{model_name=\"gate\"", await metrics.GetStringAsync("/metrics"));
        // Every metric of the request is updated once the access line (after Requests2XX) and WorkerThreadTime (the
        // batch's last) are in: in log mode their lines would be written by then.
        await server.WaitForLogAsync("access_log.log", t => t.Contains("/predictions/gate", StringComparison.Ordinal));
        for (var i = 0; i < 400 && !(await metrics.GetStringAsync("/metrics?name[]=WorkerThreadTime")).Contains("WorkerThreadTime{", StringComparison.Ordinal); i++)
            await Task.Delay(25);
        Assert.False(File.Exists(Path.Combine(server.LogDirectory, "ts_metrics.log")));
        Assert.False(File.Exists(Path.Combine(server.LogDirectory, "model_metrics.log")));
    }
}
