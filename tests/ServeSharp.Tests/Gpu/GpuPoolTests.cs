using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using ServeSharp.Sdk;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Wlm;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Gpu;

/// <summary>
/// Where workers run: TorchServe's GPU assignment, number_of_gpu's detection, and a CPU fallback that says why. These
/// run on every machine; the tests that need a GPU are <see cref="GpuFactAttribute"/>s and are skipped, with the
/// reason, where there is none.
/// </summary>
public sealed class GpuPoolTests : IDisposable
{
    private readonly TempDir _root = new();
    private readonly string _store;

    public GpuPoolTests()
    {
        _store = _root.Sub("model-store");
        const string seg = "minWorkers: 1\nhandler:\n  mode: original\n";
        TestArchives.Write(_root, _store, "auto", "image_segmenter", seg, TestModels.Tiny);
        TestArchives.Write(_root, _store, "gpu", "image_segmenter", seg + "deviceType: gpu\n", TestModels.Tiny);
        TestArchives.Write(_root, _store, "gpu7", "image_segmenter", seg + "deviceType: gpu\ndeviceIds: [7]\n", TestModels.Tiny);
        TestArchives.Write(_root, _store, "ids", Server.GateHandler.Name, "minWorkers: 3\ndeviceType: gpu\ndeviceIds: [2, 5]\n");
        TestArchives.Write(_root, _store, "rr1", Server.GateHandler.Name, "minWorkers: 2\ndeviceType: gpu\n");
        TestArchives.Write(_root, _store, "rr2", Server.GateHandler.Name, "minWorkers: 2\n");
    }

    [Fact]
    public void Without_deviceIds_workers_take_GPUs_from_one_counter_shared_by_every_model_as_TorchServe_does()
    {
        // TorchServe: gpuCounter.accumulateAndGet(maxGpu, (prev, max) -> ++prev % max): the first worker gets GPU 1.
        var counter = 0;
        Assert.Equal([1, 2, 3, 0, 1], Enumerable.Range(0, 5).Select(_ => GpuAssignment.NextShared(ref counter, 4)));
        var single = 0;
        Assert.Equal([0, 0, 0], Enumerable.Range(0, 3).Select(_ => GpuAssignment.NextShared(ref single, 1)));
    }

    [Fact]
    public void With_deviceIds_a_models_workers_take_them_in_order_from_its_own_counter()
    {
        // TorchServe: model.getGpuCounter().getAndAccumulate(1, (prev, s) -> (prev + s) % maxGpu), then deviceIds.get(i).
        int[] deviceIds = [2, 3];
        var counter = 0;
        Assert.Equal([2, 3, 2, 3], Enumerable.Range(0, 4).Select(_ => deviceIds[GpuAssignment.NextOwn(ref counter, deviceIds.Length)]));
    }

    // The assignment as the server makes it, on any machine: the planner is told CUDA works, and the test handler never
    // opens a session, so the workers keep the GPU ids they were given.
    [Fact]
    public async Task The_server_assigns_deviceIds_per_model_and_other_GPUs_from_the_shared_counter()
    {
        await using var server = await InProcessServer.StartAsync(_store, ["ids=ids.mar"], "number_of_gpu=6", handlers: Server.GateHandler.BuiltIn, cudaProblem: () => null);
        await server.WaitReadyAsync("ids", 3);
        Assert.Equal(["gpu 2", "gpu 2", "gpu 5"], await GpuUsageAsync(server, "ids"));

        await using var shared = await InProcessServer.StartAsync(_store, properties: "number_of_gpu=4", handlers: Server.GateHandler.BuiltIn, cudaProblem: () => null);
        using var management = shared.Management;
        using (var r = await management.PostAsync("/models?url=rr1.mar&synchronous=true", null)) Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        using (var r = await management.PostAsync("/models?url=rr2.mar&synchronous=true", null)) Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        // rr2 says no deviceType: number_of_gpu > 0 makes it a gpu model (TorchServe's default), and it takes the next GPUs.
        Assert.Equal(["gpu 1", "gpu 2"], await GpuUsageAsync(shared, "rr1"));
        Assert.Equal(["gpu 0", "gpu 3"], await GpuUsageAsync(shared, "rr2"));
    }

    [Theory]
    [InlineData(null, 4, 4)]
    [InlineData("", 4, 0)]
    [InlineData("-1", 4, 0)]
    [InlineData("1,0", 4, 2)]
    [InlineData("0,7,1", 4, 1)]
    [InlineData("0,0", 4, 1)]
    [InlineData("GPU-8f3a,GPU-11aa", 2, 2)]
    [InlineData("0", 0, 0)]
    public void Number_of_gpu_defaults_to_the_GPUs_CUDA_would_show_this_process(string? cudaVisibleDevices, int physical, int visible) =>
        Assert.Equal(visible, GpuInventory.Visible(cudaVisibleDevices, physical));

    [Fact]
    public async Task A_model_that_TorchServes_rule_puts_on_a_GPU_serves_where_it_really_can_and_describe_says_why()
    {
        await using var server = await InProcessServer.StartAsync(_store, ["auto=auto.mar"], "number_of_gpu=1");
        await server.WaitReadyAsync("auto");
        using var inference = server.Inference;
        using (var response = await inference.PostAsync("/predictions/auto", new ByteArrayContent(Images.SolidPng(24, 24, 9, 99, 199))))
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var worker = await WorkerAsync(server, "auto");
        if (OrtSessionFactory.CudaUnavailableReason is { } reason)
        {
            Assert.Equal("cpu", worker.GetProperty("deviceType").GetString());
            Assert.False(worker.GetProperty("gpu").GetBoolean());
            Assert.Equal($"ONNX Runtime's CUDA provider cannot be used: {reason}", worker.GetProperty("fallbackReason").GetString());
        }
        else
        {
            Assert.Equal(("gpu", true, "gpu 0"), (worker.GetProperty("deviceType").GetString(), worker.GetProperty("gpu").GetBoolean(), worker.GetProperty("gpuUsage").GetString()));
        }
    }

    [Theory]
    [InlineData("number_of_gpu=0", "gpu.mar", "number_of_gpu is 0")]
    [InlineData("number_of_gpu=2", "gpu7.mar", "deviceIds names GPU 7, but number_of_gpu is 2")]
    public async Task An_explicit_deviceType_gpu_that_cannot_be_honoured_is_refused_at_registration(string properties, string archive, string message)
    {
        await using var server = await InProcessServer.StartAsync(_store, properties: properties);
        using var management = server.Management;
        using var response = await management.PostAsync($"/models?url={archive}&initial_workers=1&synchronous=true", null);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("BadRequestException", error.GetProperty("type").GetString());
        Assert.Contains(message, error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task Without_CUDA_an_explicit_deviceType_gpu_is_refused_naming_what_is_missing()
    {
        await using var server = await InProcessServer.StartAsync(_store, properties: "number_of_gpu=1");
        using var management = server.Management;
        using var response = await management.PostAsync("/models?url=gpu.mar&initial_workers=1&synchronous=true", null);
        if (OrtSessionFactory.CudaUnavailableReason is { } reason)
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Contains($"CUDA provider cannot be used: {reason}", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("message").GetString());
        }
        else
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }

    [Fact]
    public async Task GPU_metrics_are_TorchServes_per_device_gauges_and_absent_where_there_is_no_GPU()
    {
        await using var server = await InProcessServer.StartAsync(_store);
        using var metrics = server.Metrics;
        var text = await metrics.GetStringAsync("/metrics");
        if (Nvml.DeviceCount().Count == 0)
        {
            // As TorchServe's exposition: the families are described (# HELP, # TYPE) but have no samples, not zeros.
            Assert.DoesNotMatch(new Regex("^GPUUtilization\\{", RegexOptions.Multiline), text);
            Assert.DoesNotMatch(new Regex("^GPUMemoryUsed\\{", RegexOptions.Multiline), text);
        }
        else
        {
            Assert.Contains("GPUMemoryUtilization{Level=\"Host\",DeviceId=\"0\"", text);
            Assert.Contains("GPUMemoryUsed{Level=\"Host\",DeviceId=\"0\"", text);
            Assert.Contains("GPUUtilization{Level=\"Host\",DeviceId=\"0\"", text);
        }
    }

    [GpuFact]
    public async Task On_a_GPU_a_deviceType_gpu_model_serves_on_CUDA()
    {
        await using var server = await InProcessServer.StartAsync(_store, ["gpu=gpu.mar"]);
        await server.WaitReadyAsync("gpu");
        using var inference = server.Inference;
        using (var response = await inference.PostAsync("/predictions/gpu", new ByteArrayContent(Images.SolidPng(24, 24, 9, 99, 199))))
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var worker = await WorkerAsync(server, "gpu");
        Assert.Equal(("gpu", true), (worker.GetProperty("deviceType").GetString(), worker.GetProperty("gpu").GetBoolean()));
    }

    private static async Task<string[]> GpuUsageAsync(InProcessServer server, string model)
    {
        using var management = server.Management;
        var described = JsonDocument.Parse(await management.GetStringAsync($"/models/{model}")).RootElement[0];
        return [.. described.GetProperty("workers").EnumerateArray().Select(w => w.GetProperty("gpuUsage").GetString()!).Order()];
    }

    private static async Task<JsonElement> WorkerAsync(InProcessServer server, string model)
    {
        using var management = server.Management;
        var described = JsonDocument.Parse(await management.GetStringAsync($"/models/{model}")).RootElement[0];
        return Assert.Single(described.GetProperty("workers").EnumerateArray());
    }

    public void Dispose() => _root.Dispose();
}

/// <summary>A test that needs a GPU ONNX Runtime can use: skipped, with the reason, on machines without one.</summary>
public sealed class GpuFactAttribute : FactAttribute
{
    public GpuFactAttribute()
    {
        var (gpus, how) = GpuInventory.Detect();
        if (gpus == 0) Skip = $"needs a GPU: {how}";
        else if (OrtSessionFactory.CudaUnavailableReason is { } reason) Skip = $"needs ONNX Runtime's CUDA provider: {reason}";
    }
}
