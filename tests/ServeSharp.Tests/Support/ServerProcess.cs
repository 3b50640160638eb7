using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.Json;

namespace ServeSharp.Tests.Support;

/// <summary>
/// The real servesharp command, started with --start in its own folder on free loopback ports and stopped
/// with --stop, as a user would run it. Each instance has its own pid file, logs/ and key_file.json.
/// </summary>
internal sealed class ServerProcess : IAsyncDisposable
{
    private ServerProcess(string directory, int inference, int management, int metrics, int grpcInference, int grpcManagement)
    {
        GrpcInferenceUrl = $"http://127.0.0.1:{grpcInference}";
        GrpcManagementUrl = $"http://127.0.0.1:{grpcManagement}";
        Directory = directory;
        InferenceUrl = $"http://127.0.0.1:{inference}";
        ManagementUrl = $"http://127.0.0.1:{management}";
        MetricsUrl = $"http://127.0.0.1:{metrics}";
    }

    public string Directory { get; }
    public string InferenceUrl { get; }
    public string ManagementUrl { get; }
    public string MetricsUrl { get; }
    public string GrpcInferenceUrl { get; }
    public string GrpcManagementUrl { get; }
    public string? InferenceKey { get; private set; }
    public string? ManagementKey { get; private set; }
    public string StartOutput { get; private set; } = "";
    public bool Running { get; private set; }

    public HttpClient Inference => Client(InferenceUrl, InferenceKey);
    public HttpClient Management => Client(ManagementUrl, ManagementKey);
    public HttpClient Metrics => Client(MetricsUrl, null);

    /// <summary>False: the server finds its pid file as a user's would (one per configuration, in the temp folder).</summary>
    private bool _ownPidFile = true;

    public IReadOnlyDictionary<string, string> Environment => _ownPidFile
        ? new Dictionary<string, string> { ["SERVESHARP_PID_FILE"] = Path.Combine(Directory, "servesharp.pid"), ["LOG_LOCATION"] = Path.Combine(Directory, "logs") }
        : new Dictionary<string, string> { ["LOG_LOCATION"] = Path.Combine(Directory, "logs") };

    /// <summary>Starts a server in <paramref name="directory"/> (kept between starts: snapshots and keys live there).</summary>
    public static ServerProcess Start(string directory, string modelStore, string[] args, string extraConfig = "", bool expectSuccess = true, bool ownPidFile = true, bool launch = true)
    {
        var server = new ServerProcess(directory, FreePort(), FreePort(), FreePort(), FreePort(), FreePort()) { _ownPidFile = ownPidFile };
        File.WriteAllText(Path.Combine(directory, "config.properties"), $"""
            inference_address={server.InferenceUrl}
            management_address={server.ManagementUrl}
            metrics_address={server.MetricsUrl}
            grpc_inference_port={new Uri(server.GrpcInferenceUrl).Port}
            grpc_management_port={new Uri(server.GrpcManagementUrl).Port}
            model_store={modelStore}
            {extraConfig}
            """);
        if (launch) server.Launch(args, expectSuccess);
        return server;
    }

    /// <summary>Starts the server again on the same ports and folder (for snapshot restore).</summary>
    public void Restart(string[] args, bool expectSuccess = true) => Launch(args, expectSuccess);

    private void Launch(string[] args, bool expectSuccess)
    {
        var (code, output) = Repo.Run("dotnet", [ServerDll, "--start", "--ts-config", "config.properties", .. args], Directory, 180, Environment);
        StartOutput = output;
        Running = code == 0;
        if (expectSuccess) Assert.True(code == 0, $"servesharp --start failed ({code}):\n{output}\n{Log()}");
        var keyFile = Path.Combine(Directory, "key_file.json");
        if (File.Exists(keyFile))
        {
            using var keys = JsonDocument.Parse(File.ReadAllText(keyFile));
            InferenceKey = keys.RootElement.GetProperty("inference").GetProperty("key").GetString();
            ManagementKey = keys.RootElement.GetProperty("management").GetProperty("key").GetString();
        }
    }

    public (int ExitCode, string Output) Stop()
    {
        var result = Repo.Run("dotnet", [ServerDll, "--stop"], Directory, 120, Environment);
        Running = false;
        return result;
    }

    /// <summary>Runs the curl binary, as TorchServe's docs do; returns (HTTP status, body).</summary>
    public static (int Status, string Body) Curl(params string[] args)
    {
        var (code, output) = Repo.Run("curl", ["-s", "-w", "\n%{http_code}", .. args]);
        Assert.True(code == 0, $"curl failed ({code}): {output}");
        var cut = output.LastIndexOf('\n');
        return (int.Parse(output[(cut + 1)..].Trim()), output[..cut]);
    }

    /// <summary>The end of the server's ts_log.log (without the access and metric lines it also holds), and its raw
    /// console output if it printed any (a crash).</summary>
    public string Log() => Tail("ts_log.log") + Tail("servesharp.out");

    /// <summary>The whole of one of the server's log files (empty when it was never written).</summary>
    public string LogFile(string name)
    {
        var file = Path.Combine(Directory, "logs", name);
        if (!File.Exists(file)) return "";
        using var reader = new StreamReader(new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete));
        return reader.ReadToEnd();
    }

    private string Tail(string name) => string.Join('\n', LogFile(name).Split('\n')
        .Where(l => !l.Contains(" ACCESS_LOG - ", StringComparison.Ordinal) && !l.Contains("_METRICS - ", StringComparison.Ordinal)).TakeLast(40));

    /// <summary>Polls /ping until it says Healthy (workers load in the background after start).</summary>
    public async Task WaitHealthyAsync(TimeSpan? timeout = null)
    {
        using var http = Inference;
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
        while (DateTime.UtcNow < deadline)
        {
            using var response = await http.GetAsync("/ping");
            if (response.StatusCode == HttpStatusCode.OK) return;
            await Task.Delay(100);
        }
        Assert.Fail("server did not become Healthy:\n" + Log());
    }

    public ValueTask DisposeAsync()
    {
        if (Running) Stop();
        return ValueTask.CompletedTask;
    }

    public static string ServerDll => Path.Combine(AppContext.BaseDirectory, "servesharp.dll");

    private static HttpClient Client(string url, string? key)
    {
        var client = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(120) };
        if (key is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    public static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }
}
