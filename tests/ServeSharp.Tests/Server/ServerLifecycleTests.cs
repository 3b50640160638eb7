using System.Diagnostics;
using System.Net;
using System.Text.Json;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>
/// The whole TorchServe workflow against the real servesharp process: start → predict → register → scale up and
/// down under load → describe → set-default → unregister → stop, with token auth on and off, partly with curl.
/// </summary>
[Collection("server")]
public sealed class ServerLifecycleTests(ModelStoreFixture store)
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Full_workflow_with_auth_on_and_off(bool auth)
    {
        string[] args = ["--models", "probe=probe.mar", "--ncs", "--enable-model-api", .. auth ? Array.Empty<string>() : ["--disable-token-auth"]];
        await using var server = ServerProcess.Start(store.NewWorkDir(), store.Store, args);
        await server.WaitHealthyAsync();
        Assert.Equal(auth, File.Exists(Path.Combine(server.Directory, "key_file.json")));

        // Predict with curl, as TorchServe's docs do (-T uploads the file as the body).
        var input = Path.Combine(server.Directory, "input.txt");
        File.WriteAllText(input, "hello");
        string[] inferenceAuth = auth ? ["-H", $"Authorization: Bearer {server.InferenceKey}"] : [];
        string[] managementAuth = auth ? ["-H", $"Authorization: Bearer {server.ManagementKey}"] : [];
        var (status, body) = ServerProcess.Curl([.. inferenceAuth, "-H", "X-Probe: yes", $"{server.InferenceUrl}/predictions/probe", "-T", input]);
        Assert.Equal(200, status);
        using (var doc = JsonDocument.Parse(body))
        {
            Assert.Equal("hello", doc.RootElement.GetProperty("body").GetString());
            Assert.Equal("1.0", doc.RootElement.GetProperty("version").GetString());
            Assert.Equal("yes", doc.RootElement.GetProperty("header").GetString());
        }

        if (auth)
        {
            var (noKey, noKeyBody) = ServerProcess.Curl($"{server.InferenceUrl}/predictions/probe", "-T", input);
            Assert.Equal(400, noKey); // TorchServe answers a missing or wrong key with 400 (InvalidKeyException)
            Assert.Contains("Token Authorization failed", noKeyBody);
            var (wrongKey, _) = ServerProcess.Curl("-H", $"Authorization: Bearer {server.ManagementKey}", $"{server.InferenceUrl}/predictions/probe", "-T", input);
            Assert.Equal(400, wrongKey);
            var (mgmtNoKey, _) = ServerProcess.Curl($"{server.ManagementUrl}/models");
            Assert.Equal(400, mgmtNoKey);
        }

        // Register version 2.0 from the model store, synchronously, with curl.
        var (registered, registerBody) = ServerProcess.Curl([.. managementAuth, "-X", "POST", $"{server.ManagementUrl}/models?url=probe-v2.mar&initial_workers=1&synchronous=true"]);
        Assert.Equal(200, registered);
        Assert.Contains("Model \\\"probe\\\" Version: 2.0 registered with 1 initial workers", registerBody);

        // Scale 1.0 up to 3 and back down to 1 while clients keep predicting: nothing may fail or go missing.
        using var inference = server.Inference;
        using var management = server.Management;
        using var load = new CancellationTokenSource();
        var clients = Enumerable.Range(0, 4).Select(i => LoadAsync(inference, "/predictions/probe/1.0?sleep_ms=20", load.Token)).ToArray();

        var up = await management.PutAsync("/models/probe/1.0?min_worker=3&synchronous=true", null);
        Assert.Equal(HttpStatusCode.OK, up.StatusCode);
        Assert.Contains("Workers scaled to 3", await up.Content.ReadAsStringAsync());
        var described = await DescribeAsync(management, "/models/probe/1.0");
        Assert.Equal(3, described.GetProperty("workers").GetArrayLength());
        Assert.Equal(3, described.GetProperty("minWorkers").GetInt32());
        Assert.All(described.GetProperty("workers").EnumerateArray(), w => Assert.Equal("READY", w.GetProperty("status").GetString()));

        var down = await management.PutAsync("/models/probe/1.0?min_worker=1&synchronous=true", null);
        Assert.Equal(HttpStatusCode.OK, down.StatusCode);
        await Task.Delay(300);
        load.Cancel();
        var results = await Task.WhenAll(clients);
        Assert.True(results.Sum(r => r.Ok) > 10, "the load clients barely ran");
        Assert.Equal(0, results.Sum(r => r.Failed));
        Assert.Single((await DescribeAsync(management, "/models/probe/1.0")).GetProperty("workers").EnumerateArray());

        // All versions, then make 2.0 the default: unversioned predictions go to it.
        var all = JsonDocument.Parse(await management.GetStringAsync("/models/probe/all")).RootElement;
        Assert.Equal(["1.0", "2.0"], all.EnumerateArray().Select(m => m.GetProperty("modelVersion").GetString()));
        var (setDefault, setDefaultBody) = ServerProcess.Curl([.. managementAuth, "-X", "PUT", $"{server.ManagementUrl}/models/probe/2.0/set-default"]);
        Assert.Equal(200, setDefault);
        Assert.Contains("Default version successfully updated", setDefaultBody);
        Assert.Equal("2.0", JsonDocument.Parse(await (await inference.PostAsync("/predictions/probe", new StringContent("x"))).Content.ReadAsStringAsync()).RootElement.GetProperty("version").GetString());

        // List, then unregister 1.0.
        var list = JsonDocument.Parse(await management.GetStringAsync("/models")).RootElement;
        Assert.Equal("probe", list.GetProperty("models")[0].GetProperty("modelName").GetString());
        var (deleted, deleteBody) = ServerProcess.Curl([.. managementAuth, "-X", "DELETE", $"{server.ManagementUrl}/models/probe/1.0"]);
        Assert.Equal(200, deleted);
        Assert.Contains("unregistered", deleteBody);
        Assert.Equal(HttpStatusCode.NotFound, (await inference.PostAsync("/predictions/probe/1.0", new StringContent("x"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/probe", new StringContent("x"))).StatusCode);

        var (code, output) = server.Stop();
        Assert.True(code == 0, output);
        Assert.Contains("ServeSharp has stopped", output);
        await Assert.ThrowsAsync<HttpRequestException>(() => inference.GetAsync("/ping"));
    }

    [Fact]
    public async Task Stop_lets_in_flight_requests_finish()
    {
        await using var server = ServerProcess.Start(store.NewWorkDir(), store.Store, ["--models", "probe=probe.mar", "--ncs", "--disable-token-auth"]);
        await server.WaitHealthyAsync();
        using var inference = server.Inference;
        var marker = Path.Combine(server.Directory, "in-flight");
        var slow = inference.PostAsync($"/predictions/probe?sleep_ms=1500&touch={Uri.EscapeDataString(marker)}", new StringContent("slow"));
        // Stop only once the request is in the handler: a fixed delay raced the connection on a loaded machine.
        using (var waited = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
            while (!File.Exists(marker) && !slow.IsCompleted) await Task.Delay(20, waited.Token);
        var (code, _) = server.Stop();
        Assert.Equal(0, code);
        var response = await slow;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("slow", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Snapshot_restores_models_and_worker_counts_unless_ncs()
    {
        var dir = store.NewWorkDir();
        // A fresh folder has nothing to restore; --ncs here would also stop the snapshots being written (TorchServe's --ncs).
        await using var server = ServerProcess.Start(dir, store.Store, ["--disable-token-auth", "--enable-model-api"]);
        using (var management = server.Management)
        {
            var r = await management.PostAsync("/models?url=linear.mar&initial_workers=2&synchronous=true&batch_size=3", null);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }
        server.Stop();

        server.Restart(["--disable-token-auth"]);
        await server.WaitHealthyAsync();
        using (var management = server.Management)
        {
            var model = await DescribeAsync(management, "/models/linear");
            Assert.Equal(2, model.GetProperty("minWorkers").GetInt32());
            Assert.Equal(3, model.GetProperty("batchSize").GetInt32());
            Assert.Equal(2, model.GetProperty("workers").GetArrayLength());
        }
        using (var inference = server.Inference)
        {
            var response = await inference.PostAsync("/predictions/linear", new ByteArrayContent("1,2,3"u8.ToArray()));
            Assert.StartsWith("1,2,3,-6;argmax=2", await response.Content.ReadAsStringAsync());
        }
        server.Stop();

        server.Restart(["--disable-token-auth", "--ncs"]);
        using (var management = server.Management)
        {
            Assert.Equal(HttpStatusCode.NotFound, (await management.GetAsync("/models/linear")).StatusCode);
        }
    }

    [Fact]
    public async Task After_kill_9_the_next_start_is_not_blocked_by_the_pid_file_and_restores_the_snapshot()
    {
        var dir = store.NewWorkDir();
        // Not --ncs: as in TorchServe, that would stop the server writing snapshots too.
        await using var server = ServerProcess.Start(dir, store.Store, ["--disable-token-auth", "--enable-model-api"]);
        using (var management = server.Management)
        {
            var r = await management.PostAsync("/models?url=linear.mar&initial_workers=1&synchronous=true", null);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }
        // The snapshot is written in the background: wait for the one that names the model (bounded).
        var snapshots = Path.Combine(dir, "logs", "config");
        for (var i = 0; i < 200 && !(Directory.Exists(snapshots) && Directory.GetFiles(snapshots, "*.cfg").Any(f => File.ReadAllText(f).Contains("linear.mar"))); i++)
            await Task.Delay(50);
        var pid = int.Parse(File.ReadAllText(Path.Combine(dir, "servesharp.pid")).Split(' ')[0]);
        using (var kill = Process.Start("kill", ["-9", pid.ToString()])) await kill.WaitForExitAsync();
        for (var i = 0; i < 200 && !Dead(pid); i++)
            await Task.Delay(50);

        server.Restart(["--disable-token-auth"]);
        await server.WaitHealthyAsync();
        using var inference = server.Inference;
        var response = await inference.PostAsync("/predictions/linear", new ByteArrayContent("1,2,3"u8.ToArray()));
        Assert.StartsWith("1,2,3,-6;argmax=2", await response.Content.ReadAsStringAsync());
        server.Stop();
    }

    internal static async Task<JsonElement> DescribeAsync(HttpClient management, string path)
    {
        var text = await management.GetStringAsync(path);
        return JsonDocument.Parse(text).RootElement[0].Clone();
    }

    private static async Task<(int Ok, int Failed)> LoadAsync(HttpClient client, string path, CancellationToken stop)
    {
        int ok = 0, failed = 0;
        while (!stop.IsCancellationRequested)
        {
            using var response = await client.PostAsync(path, new StringContent("load"), CancellationToken.None);
            if (response.StatusCode == HttpStatusCode.OK) ok++;
            else failed++;
        }
        return (ok, failed);
    }

    // Dead or a zombie; the runtime may reap it between two reads, so a vanished /proc entry counts as dead.
    private static bool Dead(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ", StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return true;
        }
    }
}
