using System.Diagnostics;
using System.Net;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Deploy;

/// <summary>
/// SIGTERM to the real server process, as a container runtime or Kubernetes sends it to the process a container runs:
/// `servesharp --start --foreground` is that process (the image's `torchserve --start` is it).
/// </summary>
[Collection("server")]
public sealed class SigtermProcessTests(ModelStoreFixture store)
{
    [Fact]
    public async Task Sigterm_drains_eight_in_flight_requests_writes_the_snapshot_and_exits_0()
    {
        const int InFlight = 8;
        var dir = store.NewWorkDir();
        var server = ServerProcess.Start(dir, store.Store, [], "disable_token_authorization=true\nenable_model_api=true\ndefault_worker_isolation=in-process", launch: false);
        var info = new ProcessStartInfo("dotnet") { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { ServerProcess.ServerDll, "--start", "--foreground", "--ts-config=config.properties", "--models=probe=probe.mar" }) info.ArgumentList.Add(a);
        foreach (var (k, v) in server.Environment) info.Environment[k] = v;
        using var process = Process.Start(info)!;
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            using var inference = server.Inference;
            await WaitForAsync(async () =>
            {
                Assert.False(process.HasExited, "the server exited at start:\n" + string.Join('\n', output));
                try
                {
                    return (await inference.GetAsync("/ping")).StatusCode == HttpStatusCode.OK;
                }
                catch (HttpRequestException)
                {
                    return false; // not listening yet
                }
            }, "the server did not become healthy", TimeSpan.FromSeconds(120));
            using var management = server.Management;
            var scaled = await management.PutAsync("/models/probe?min_worker=8&max_worker=8&synchronous=true", null);
            Assert.True(scaled.IsSuccessStatusCode, await scaled.Content.ReadAsStringAsync());

            // Each request is in a handler of its own (its marker file says so) before the signal: all 8 are in flight.
            var markers = Enumerable.Range(0, InFlight).Select(i => Path.Combine(dir, $"in-flight-{i}")).ToArray();
            var requests = markers.Select((m, i) => inference.PostAsync($"/predictions/probe?sleep_ms=4000&touch={Uri.EscapeDataString(m)}", new StringContent($"request {i}"))).ToArray();
            using (var waited = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
                while (!markers.All(File.Exists)) await Task.Delay(20, waited.Token);

            var (killed, killOutput) = Repo.Run("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            Assert.True(killed == 0, killOutput);

            // While the eight finish, readiness says no and new work is refused (the listener still answers).
            await WaitForAsync(async () => (await inference.GetAsync("/ping")).StatusCode == HttpStatusCode.ServiceUnavailable, "readiness did not go false");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await inference.PostAsync("/predictions/probe", new StringContent("late"))).StatusCode);

            var answers = await Task.WhenAll(requests).WaitAsync(TimeSpan.FromSeconds(60));
            Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.StatusCode));
            for (var i = 0; i < InFlight; i++) Assert.Contains($"request {i}", await answers[i].Content.ReadAsStringAsync());

            Assert.True(process.WaitForExit(60_000), "the server did not exit after SIGTERM");
            process.WaitForExit(); // flushes the redirected output
            Assert.True(process.ExitCode == 0, $"exit code {process.ExitCode}:\n{string.Join('\n', output)}");
            var snapshots = Directory.GetFiles(Path.Combine(dir, "logs", "config"), "*snapshot*");
            Assert.NotEmpty(snapshots);
            Assert.Contains("probe", File.ReadAllText(snapshots.Max(StringComparer.Ordinal)!));
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition, string failure, TimeSpan? timeout = null)
    {
        using var deadline = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        while (!await condition())
        {
            if (deadline.IsCancellationRequested) Assert.Fail(failure);
            await Task.Delay(20, CancellationToken.None);
        }
    }
}
