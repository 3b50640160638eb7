using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using ServeSharp.Server.Workers;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Isolation;

/// <summary>
/// Custom handlers run in worker processes: a handler that exits, overflows its stack, spins, leaks or stops answering
/// costs its process, which the pool replaces; the server and its other models serve on. The real host in-process,
/// real child processes, real sockets. Waits on real time are safety bounds, never assertions on speed.
/// </summary>
[Collection("isolation")]
public sealed class WorkerIsolationTests(IsolationStoreFixture store)
{
    [Theory]
    [InlineData("exit", "Worker died", "exited with code 3")]
    [InlineData("stack", "Worker died", "Stack overflow")]
    [InlineData("spin", "timed out", "responseTimeout")]
    public async Task A_fault_in_a_custom_handler_costs_one_worker_process(string mode, string answer, string reason)
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["fault=fault.mar", "seg_inproc=seg_inproc.mar"]);
        using var inference = server.Inference;
        var pid = int.Parse(await Text(inference, "fault", "pid"));
        Assert.NotEqual(Environment.ProcessId, pid);

        using var response = await Send(inference, "fault", mode);
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(500, error.GetProperty("code").GetInt32());
        Assert.Contains(answer, error.GetProperty("message").GetString());

        using (var other = await inference.PostAsync("/predictions/seg_inproc", new ByteArrayContent(Images.SolidPng(32, 32, 200, 10, 10))))
            Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        await ServesAgainAsync(inference, "fault");

        var worker = await OnlyWorkerAsync(server, "fault");
        Assert.Equal(1, worker.GetProperty("restarts").GetInt32());
        Assert.Contains(reason, worker.GetProperty("lastExitReason").GetString());
        Assert.Equal("process", worker.GetProperty("isolation").GetString());
        Assert.NotEqual(pid, worker.GetProperty("pid").GetInt32());
        Assert.False(Directory.Exists($"/proc/{pid}"), $"the old worker process {pid} still exists (a spinning one would still burn its CPU)");
        using var metrics = server.Metrics;
        Assert.Contains("ts_worker_restarts_total{model_name=\"fault\"", await metrics.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task A_handler_exception_is_answered_at_once_and_the_worker_process_serves_on_through_group_signals()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["fault=fault.mar"]);
        using var inference = server.Inference;
        var pid = int.Parse(await Text(inference, "fault", "pid"));
        using (var failed = await Send(inference, "fault", "ioerror"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, failed.StatusCode);
            Assert.Contains("Prediction failed: a side file is missing", await failed.Content.ReadAsStringAsync());
        }
        // A Ctrl-C or a service manager's SIGTERM for the whole group must not take the workers from under the drain.
        foreach (var signal in new[] { "-INT", "-TERM" })
        {
            using var kill = Process.Start("kill", [signal, pid.ToString()])!;
            await kill.WaitForExitAsync();
        }
        Assert.Equal(pid, int.Parse(await Text(inference, "fault", "pid")));
        Assert.Equal(0, (await OnlyWorkerAsync(server, "fault")).GetProperty("restarts").GetInt32());
    }

    [Fact]
    public async Task A_worker_over_maxWorkerMemoryMB_is_killed_and_replaced()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["leak=leak.mar"]);
        using var inference = server.Inference;
        using var response = await Send(inference, "leak", "leak");
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Contains("maxWorkerMemoryMB (500)", await response.Content.ReadAsStringAsync());
        await ServesAgainAsync(inference, "leak");
        var worker = await OnlyWorkerAsync(server, "leak");
        Assert.Contains("resident memory", worker.GetProperty("lastExitReason").GetString());
    }

    [Fact]
    public async Task A_handler_that_throws_in_initialize_fails_its_registration_with_the_reason()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["seg_inproc=seg_inproc.mar"]);
        using var management = server.Management;
        using var response = await management.PostAsync("/models?url=badinit.mar&initial_workers=1&synchronous=true", null);
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Contains("this handler refuses to initialise", await response.Content.ReadAsStringAsync());
        using var inference = server.Inference;
        using var other = await inference.PostAsync("/predictions/seg_inproc", new ByteArrayContent(Images.SolidPng(16, 16, 0, 0, 0)));
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
    }

    [Fact]
    public async Task A_working_handler_answers_byte_for_byte_the_same_in_both_isolation_modes()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["fault=fault.mar", "fault_inproc=fault_inproc.mar", "seg_proc=seg_proc.mar", "seg_inproc=seg_inproc.mar"]);
        using var inference = server.Inference;
        var image = Images.SolidPng(48, 40, 30, 200, 90);
        foreach (var (process, inProcess, path) in new[] { ("fault", "fault_inproc", "?tag=t1"), ("seg_proc", "seg_inproc", "") })
        {
            var a = await AnswerAsync(inference, $"/predictions/{process}{path}", image);
            var b = await AnswerAsync(inference, $"/predictions/{inProcess}{path}", image);
            Assert.Equal(b.Status, a.Status);
            Assert.Equal(b.ContentType, a.ContentType);
            Assert.Equal(b.Echo, a.Echo);
            Assert.Equal(b.Body, a.Body);
        }
        var echo = await AnswerAsync(inference, "/predictions/fault?tag=t1", image);
        Assert.Equal((201, "application/x-echo", "t1"), (echo.Status, echo.ContentType, echo.Echo));
    }

    [Fact]
    public async Task A_worker_process_gets_a_scrubbed_environment_and_the_model_folder_as_working_folder()
    {
        Environment.SetEnvironmentVariable("SERVESHARP_ISOLATION_SECRET", "not for handlers");
        await using var server = await InProcessServer.StartAsync(store.Store, ["fault=fault.mar", "fault_inproc=fault_inproc.mar"]);
        using var inference = server.Inference;
        var isolated = await Text(inference, "fault", "env");
        var inProcess = await Text(inference, "fault_inproc", "env");
        Assert.Contains("SERVESHARP_ISOLATION_SECRET", inProcess);
        Assert.DoesNotContain("SERVESHARP_ISOLATION_SECRET", isolated);
        Assert.Contains("PATH", isolated.Split('\n'));
        Assert.Matches(@"cwd=.*/servesharp-[0-9]+-[^/]+/models/fault", isolated);
    }

    [Fact]
    public async Task Unregister_stops_the_worker_process()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["fault=fault.mar"]);
        using var inference = server.Inference;
        var pid = int.Parse(await Text(inference, "fault", "pid"));
        using var management = server.Management;
        using (var response = await management.DeleteAsync("/models/fault")) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await Until(() => !Directory.Exists($"/proc/{pid}"), $"worker process {pid} to exit after unregister");
    }

    [Fact]
    public async Task A_worker_process_that_stops_answering_heartbeats_is_killed_and_replaced()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await InProcessServer.StartAsync(store.Store, ["fault=fault.mar"], time: time);
        await server.WaitReadyAsync("fault");
        var pid = (await OnlyWorkerAsync(server, "fault")).GetProperty("pid").GetInt32();
        using (var stop = Process.Start("kill", ["-STOP", pid.ToString()])) await stop.WaitForExitAsync();
        time.Advance(ProcessBackend.HeartbeatTimeout + ProcessBackend.HeartbeatInterval * 2);
        await Until(() => !Directory.Exists($"/proc/{pid}"), $"the frozen worker process {pid} to be killed");
        // The old worker is listed READY until its backend has read the process's last words: wait for the replacement.
        await Until(async () => (await WorkersAsync(server, "fault")).Any(w => w.GetProperty("pid").GetInt32() != pid
            && w.GetProperty("status").GetString() == "READY"), "a new worker process to replace it");
        var worker = await OnlyWorkerAsync(server, "fault");
        Assert.Equal(1, worker.GetProperty("restarts").GetInt32());
        Assert.Contains("heartbeat", worker.GetProperty("lastExitReason").GetString());
    }

    [Fact]
    public async Task With_worker_user_a_root_server_runs_its_worker_processes_as_that_user_who_cannot_read_the_key_file()
    {
        using var dir = new TempDir();
        await using var server = ServerProcess.Start(dir.Path, store.Store, ["--models", "fault=fault.mar", "--ncs"], "worker_user=nobody\n");
        if (!File.ReadLines("/proc/self/status").Any(l => l.StartsWith("Uid:\t0\t", StringComparison.Ordinal)))
        {
            // Not root: the setting cannot be honoured, and the worker says why instead of running as the server's user.
            using var management = server.Management;
            await Until(async () => (await management.GetStringAsync("/models/fault")).Contains("needs the server to run as root"), "the worker_user refusal");
            return;
        }
        await server.WaitHealthyAsync();
        using var inference = server.Inference;
        var pid = int.Parse(await Text(inference, "fault", "pid"));
        Assert.Contains(File.ReadLines($"/proc/{pid}/status"), l => l.StartsWith("Uid:\t65534\t", StringComparison.Ordinal));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/predictions/fault") { Content = new ByteArrayContent([1]) };
        request.Headers.Add("X-Mode", "read");
        request.Headers.Add("X-Path", Path.Combine(dir.Path, "key_file.json"));
        using var response = await inference.SendAsync(request);
        Assert.Equal("denied", await response.Content.ReadAsStringAsync());
        Assert.True(File.Exists(Path.Combine(dir.Path, "key_file.json")));
    }

    [Fact]
    public async Task A_start_removes_the_scratch_folders_of_a_server_that_died()
    {
        using var gone = Process.Start("true")!;
        await gone.WaitForExitAsync();
        var temp = Path.GetTempPath();
        string[] stale = [Path.Combine(temp, $"servesharp-{gone.Id}-0badc0de", "models", "m"), Path.Combine(temp, "servesharp", $"models-{gone.Id}")];
        foreach (var dir in stale) Directory.CreateDirectory(dir);
        await using var server = await InProcessServer.StartAsync(store.Store);
        Assert.False(Directory.Exists(Path.Combine(temp, $"servesharp-{gone.Id}-0badc0de")));
        Assert.False(Directory.Exists(stale[1]));
    }

    private static async Task<HttpResponseMessage> Send(HttpClient inference, string model, string mode)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/predictions/{model}") { Content = new ByteArrayContent([1, 2, 3]) };
        request.Headers.Add("X-Mode", mode);
        return await inference.SendAsync(request);
    }

    private static async Task<string> Text(HttpClient inference, string model, string mode)
    {
        using var response = await Send(inference, model, mode);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return text;
    }

    private static async Task<(int Status, string? ContentType, string? Echo, byte[] Body)> AnswerAsync(HttpClient inference, string path, byte[] body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(body) };
        request.Headers.Add("X-Note", "note");
        using var response = await inference.SendAsync(request);
        var echo = response.Headers.TryGetValues("X-Echo", out var v) ? v.Single() : null;
        return ((int)response.StatusCode, response.Content.Headers.ContentType?.ToString(), echo, await response.Content.ReadAsByteArrayAsync());
    }

    // The replacement loads a new process (dotnet start and a Roslyn compile): poll, bounded.
    private static Task ServesAgainAsync(HttpClient inference, string model) => Until(async () =>
    {
        using var response = await inference.PostAsync($"/predictions/{model}", new ByteArrayContent([1]));
        return response.IsSuccessStatusCode;
    }, $"{model} to serve again");

    private static async Task<JsonElement> OnlyWorkerAsync(InProcessServer server, string model)
    {
        using var management = server.Management;
        var described = JsonDocument.Parse(await management.GetStringAsync($"/models/{model}")).RootElement[0];
        return Assert.Single(described.GetProperty("workers").EnumerateArray());
    }

    private static async Task<JsonElement[]> WorkersAsync(InProcessServer server, string model)
    {
        using var management = server.Management;
        var described = JsonDocument.Parse(await management.GetStringAsync($"/models/{model}")).RootElement[0];
        return [.. described.GetProperty("workers").EnumerateArray().Select(w => w.Clone())];
    }

    private static Task Until(Func<bool> condition, string what) => Until(() => Task.FromResult(condition()), what);

    private static async Task Until(Func<Task<bool>> condition, string what)
    {
        for (var i = 0; i < 600; i++)
        {
            if (await condition()) return;
            await Task.Delay(100);
        }
        Assert.Fail($"timed out waiting for {what}");
    }
}
