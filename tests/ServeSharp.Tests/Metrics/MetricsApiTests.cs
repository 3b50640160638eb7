using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Google.Protobuf;
using Org.Pytorch.Serve.Grpc.Inference;
using ServeSharp.Tests.Grpc;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Metrics;

/// <summary>The metrics API as TorchServe's: system metrics, TorchServe's model_version labels, and metrics.yaml deciding what exists.</summary>
[Collection("worker-core")]
public sealed class MetricsApiTests(GateStoreFixture store)
{
    private static readonly string Host = Regex.Escape(Environment.MachineName);

    [Theory]
    [InlineData("CPUUtilization", "Percent", 0, 100)]
    [InlineData("MemoryUtilization", "Percent", 0.1, 100)]
    [InlineData("DiskUtilization", "Percent", 0.1, 100)]
    [InlineData("MemoryUsed", "Megabytes", 1, double.MaxValue)]
    [InlineData("MemoryAvailable", "Megabytes", 1, double.MaxValue)]
    [InlineData("DiskUsage", "Gigabytes", 0.001, double.MaxValue)]
    [InlineData("DiskAvailable", "Gigabytes", 0, double.MaxValue)]
    public async Task System_metrics_are_on_the_metrics_api_with_TorchServes_names_units_and_labels(string name, string unit, double min, double max)
    {
        await using var server = await InProcessServer.StartAsync(store.Store);
        using var metrics = server.Metrics;
        var text = await metrics.GetStringAsync($"/metrics?name[]={name}");
        Assert.Contains($"# HELP {name} Torchserve prometheus gauge metric with unit: {unit}\n# TYPE {name} gauge\n", text);
        var sample = Regex.Match(text, $@"^{name}\{{Level=""Host"",Hostname=""{Host}""\}} (\S+)$", RegexOptions.Multiline);
        Assert.True(sample.Success, text);
        Assert.InRange(double.Parse(sample.Groups[1].Value, CultureInfo.InvariantCulture), min, max);
    }

    [Fact]
    public async Task Model_version_is_default_unless_the_request_named_a_version_as_TorchServe_prints_it()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var inference = server.Inference;
        Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/gate", new StringContent("x"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/gate/1.0", new StringContent("x"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/gate/1.0", new StringContent("x"))).StatusCode);
        using (var grpc = new GrpcClients(server.GrpcInferenceUrl, server.GrpcManagementUrl))
        {
            var request = new PredictionsRequest { ModelName = "gate", ModelVersion = "1.0", Input = { ["data"] = ByteString.CopyFromUtf8("x") } };
            await grpc.Inference.PredictionsAsync(request, GrpcClients.Safe());
        }

        using var metrics = server.Metrics;
        var text = await metrics.GetStringAsync("/metrics");
        Assert.Matches(Sample("ts_inference_requests_total", "default", "torchserve_rest", "1"), text);
        Assert.Matches(Sample("ts_inference_requests_total", "1.0", "torchserve_rest", "2"), text);
        Assert.Matches(Sample("ts_inference_requests_total", "1.0", "torchserve_grpc", "1"), text);
        Assert.Matches(Sample("ts_inference_latency_microseconds", "default", "torchserve_rest", @"[0-9.e+]+"), text);
        Assert.Matches(Sample("ts_queue_latency_microseconds", "1.0", "torchserve_rest", @"[0-9.e+]+"), text);

        static Regex Sample(string name, string version, string protocol, string value) => new(
            $@"^{name}\{{model_name=""gate"",model_version=""{Regex.Escape(version)}"",hostname=""{Host}"",protocol=""{protocol}""\}} {value}$", RegexOptions.Multiline);
    }

    [Fact]
    public async Task A_metrics_yaml_decides_which_metrics_exist_and_their_labels()
    {
        using var dir = new TempDir();
        var yaml = dir.File("metrics.yaml");
        // TorchServe's format and names, keeping three metrics (the request counter with TorchServe's own labels).
        File.WriteAllText(yaml, """
            dimensions:
              - &level "Level"
              - &hostname "Hostname"
            ts_metrics:
              counter:
                - name: Requests2XX
                  unit: Count
                  dimensions: [*level, *hostname]
                - name: ts_inference_requests_total
                  unit: Count
                  dimensions: ["model_name", "model_version", "hostname"]
              gauge:
                - name: CPUUtilization
                  unit: Percent
                  dimensions: [*level, *hostname]
            model_metrics:
            """);
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], $"metrics_config={yaml}", handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var inference = server.Inference;
        Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/gate", new StringContent("x"))).StatusCode);

        using var metrics = server.Metrics;
        var text = await metrics.GetStringAsync("/metrics");
        Assert.Matches(new Regex($@"^ts_inference_requests_total\{{model_name=""gate"",model_version=""default"",hostname=""{Host}""\}} 1$", RegexOptions.Multiline), text);
        Assert.Matches(new Regex($@"^CPUUtilization\{{Level=""Host"",Hostname=""{Host}""\}} ", RegexOptions.Multiline), text);
        Assert.Contains("# TYPE Requests2XX counter", text);
        foreach (var dropped in (string[])["MemoryUsed", "DiskUsage", "QueueTime", "HandlerTime", "PredictionTime", "WorkerLoadTime", "ts_batch_size", "ts_inference_latency_microseconds", "protocol="])
            Assert.DoesNotContain(dropped, text);
    }

    [Fact]
    public async Task A_malformed_metrics_yaml_stops_the_start_naming_the_file()
    {
        using var dir = new TempDir();
        var yaml = dir.File("metrics.yaml");
        File.WriteAllText(yaml, "ts_metrics:\n  gauge:\n    - name: QueueTime\n      dimensions: [Level]\n");
        var error = await Assert.ThrowsAsync<FormatException>(() => InProcessServer.StartAsync(store.Store, properties: $"metrics_config={yaml}"));
        Assert.Equal($"metrics_config {yaml}: line 3: metric QueueTime has no unit", error.Message);
    }
}
