using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Logs;

/// <summary>The real servesharp --start: TorchServe's log files in LOG_LOCATION, and a failed start that says why.</summary>
[Collection("server")]
public sealed class LogProcessTests(ModelStoreFixture store)
{
    [Fact]
    public async Task A_started_server_writes_TorchServes_log_files_and_metrics_in_log_mode_by_default()
    {
        var dir = store.NewWorkDir();
        await using var server = ServerProcess.Start(dir, store.Store, ["--models", "probe=probe.mar", "--ncs", "--disable-token-auth"]);
        await server.WaitHealthyAsync();
        var (status, _) = ServerProcess.Curl("-X", "POST", $"{server.InferenceUrl}/predictions/probe", "-d", "hello");
        Assert.Equal(200, status);
        Assert.Equal(0, server.Stop().ExitCode);

        var logs = Path.Combine(dir, "logs");
        Assert.Contains("ServeSharp - Inference API on http://127.0.0.1:", server.LogFile("ts_log.log"));
        Assert.Matches(new Regex(@"^\S+ - /127\.0\.0\.1:\d+ ""POST /predictions/probe HTTP/1\.1"" 200 \d+$", RegexOptions.Multiline), server.LogFile("access_log.log"));
        var tsMetrics = server.LogFile("ts_metrics.log");
        Assert.Contains("ts_inference_requests_total.Count:1.0|#model_name:probe,model_version:default,protocol:torchserve_rest|#hostname:", tsMetrics);
        Assert.Contains("CPUUtilization.Percent:", tsMetrics);
        Assert.Contains("HandlerTime.ms:", server.LogFile("model_metrics.log"));
        Assert.False(File.Exists(Path.Combine(logs, "servesharp.log")), "the old single log is gone");
    }

    [Fact]
    public void A_start_that_fails_prints_the_reason_from_ts_log()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var dir = store.NewWorkDir();
        var server = ServerProcess.Start(dir, store.Store, ["--ncs", "--disable-token-auth"], expectSuccess: false, launch: false);
        File.WriteAllText(Path.Combine(dir, "config.properties"),
            File.ReadAllText(Path.Combine(dir, "config.properties")).Replace(server.InferenceUrl, $"http://127.0.0.1:{port}", StringComparison.Ordinal));
        server.Restart(["--ncs", "--disable-token-auth"], expectSuccess: false);
        Assert.False(server.Running);
        Assert.Contains($"ServeSharp failed to start; see {Path.Combine(dir, "logs", "ts_log.log")}:", server.StartOutput);
        Assert.Contains("ServeSharp could not start", server.StartOutput);
        Assert.Contains("address already in use", server.StartOutput);
    }

    [Fact]
    public void A_malformed_metrics_config_refuses_the_start_naming_the_file()
    {
        var dir = store.NewWorkDir();
        var yaml = Path.Combine(dir, "metrics.yaml");
        File.WriteAllText(yaml, "ts_metrics:\n  gauge:\n    - name: [QueueTime\n");
        var server = ServerProcess.Start(dir, store.Store, ["--ncs", "--disable-token-auth"], $"metrics_config={yaml}", expectSuccess: false);
        Assert.False(server.Running);
        Assert.Contains($"servesharp: metrics_config {yaml}: invalid YAML at line", server.StartOutput);
    }
}
