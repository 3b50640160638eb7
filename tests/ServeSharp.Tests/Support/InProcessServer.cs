using System.Net.Http.Headers;
using Microsoft.Extensions.Logging;
using ServeSharp.Sdk;
using ServeSharp.Server;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Http;
using ServeSharp.Server.Logging;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Tests.Support;

/// <summary>
/// The server hosted in the test process: the real host (Kestrel on loopback port 0, the real APIs, model manager,
/// aggregators and worker threads), with an optional fake clock for batching and timeouts and extra built-in
/// handlers written in the tests.
/// </summary>
internal sealed class InProcessServer : IAsyncDisposable
{
    private readonly TempDir _dir = new();
    private ServerHost _host = null!;
    private LogFiles _logFiles = null!;
    private ILoggerFactory _loggers = null!;
    private bool _ownsLoggers;

    public string Directory => _dir.Path;

    /// <summary>Where this server's TorchServe log files go (its LOG_LOCATION and METRICS_LOCATION).</summary>
    public string LogDirectory => Path.Combine(Directory, "logs");
    public Uri InferenceUrl { get; private set; } = null!;
    public Uri ManagementUrl { get; private set; } = null!;
    public Uri MetricsUrl { get; private set; } = null!;
    public Uri GrpcInferenceUrl { get; private set; } = null!;
    public Uri GrpcManagementUrl { get; private set; } = null!;

    /// <summary>KServe's v1/v2 listener (kserve_address, or the default a service envelope opens); null when off.</summary>
    public Uri? KServeUrl { get; private set; }

    public HttpClient Inference => Client(InferenceUrl);
    public HttpClient Management => Client(ManagementUrl);
    public HttpClient Metrics => Client(MetricsUrl);
    public HttpClient KServe => Client(KServeUrl ?? throw new InvalidOperationException("no KServe listener: start with kserve_address or service_envelope"));

    /// <summary>
    /// Starts a server on free loopback ports. <paramref name="properties"/> are config.properties lines
    /// (addresses default to 127.0.0.1:0, gRPC's too; the same address given twice makes one shared listener).
    /// </summary>
    public static async Task<InProcessServer> StartAsync(string modelStore, string[]? models = null, string properties = "",
        TimeProvider? time = null, IReadOnlyDictionary<string, Func<IModelHandler>>? handlers = null, Func<string?>? cudaProblem = null,
        ILoggerFactory? loggers = null)
    {
        var server = new InProcessServer();
        var values = PropertiesFile.Parse($"""
            inference_address=http://127.0.0.1:0
            management_address=http://127.0.0.1:0
            metrics_address=http://127.0.0.1:0
            grpc_inference_port=0
            grpc_management_port=0
            disable_token_authorization=true
            enable_model_api=true
            model_store={modelStore}
            {properties}
            """);
        var options = new StartOptions
        {
            Config = ServerConfig.From(values),
            Models = models ?? [],
            NoConfigSnapshot = false, // a fresh folder: nothing to restore, and the snapshots written can be read
            LogDirectory = server.LogDirectory,
            KeyFile = Path.Combine(server.Directory, "key_file.json"),
        };
        // The server's own log files, as servesharp's Program wires them (without the console).
        server._logFiles = new LogFiles(new LogFileOptions { Directory = server.LogDirectory, MetricsDirectory = server.LogDirectory });
        // A test that reads the server's log messages passes loggers of its own (then the log files stay empty).
        server._ownsLoggers = loggers is null;
        server._loggers = loggers ?? LoggerFactory.Create(b => b.AddFilter("Microsoft.AspNetCore", LogLevel.Warning).AddProvider(server._logFiles));
        try
        {
            server._host = await ServerHost.StartAsync(options, server._loggers, CancellationToken.None, time, handlers, cudaProblem);
        }
        catch
        {
            if (server._ownsLoggers) server._loggers.Dispose();
            server._logFiles.Dispose();
            server._dir.Dispose();
            throw;
        }
        server.InferenceUrl = server._host.AddressOf(Api.Inference);
        server.ManagementUrl = server._host.AddressOf(Api.Management);
        server.MetricsUrl = server._host.AddressOf(Api.Metrics);
        server.GrpcInferenceUrl = server._host.AddressOf(Api.GrpcInference);
        server.GrpcManagementUrl = server._host.AddressOf(Api.GrpcManagement);
        if (options.Config.KServeAddress is not null) server.KServeUrl = server._host.AddressOf(Api.KServe);
        return server;
    }

    /// <summary>Polls until the model's workers are READY (real time, bounded: a safety net, not an assertion on speed).</summary>
    public async Task WaitReadyAsync(string model, int workers = 1, string? managementKey = null)
    {
        using var management = Management;
        if (managementKey is not null) management.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", managementKey);
        for (var i = 0; i < 600; i++)
        {
            var response = await management.GetAsync($"/models/{model}");
            if (response.IsSuccessStatusCode)
            {
                var described = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement[0];
                if (described.GetProperty("workers").EnumerateArray().Count(w => w.GetProperty("status").GetString() == "READY") >= workers) return;
            }
            await Task.Delay(50);
        }
        Assert.Fail($"model {model} did not get {workers} READY workers");
    }

    private bool _stopped;

    /// <summary>
    /// Stops the server as --stop would (in-flight requests finish), keeping its folder for the test to inspect;
    /// <paramref name="now"/> is a second signal (the drain ends at once).
    /// </summary>
    public async Task StopAsync(CancellationToken now = default)
    {
        if (_stopped) return;
        _stopped = true;
        await _host.StopAsync(now);
        await _host.DisposeAsync();
        if (_ownsLoggers) _loggers.Dispose();
        _logFiles.Dispose();
    }

    /// <summary>The whole of one of this server's log files (empty when nothing was written to it).</summary>
    public string LogFile(string name)
    {
        var file = Path.Combine(LogDirectory, name);
        if (!File.Exists(file)) return "";
        using var reader = new StreamReader(new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete));
        return reader.ReadToEnd();
    }

    /// <summary>Polls a log file until <paramref name="holds"/> is true of it (bounded: log lines follow the response).</summary>
    public async Task<string> WaitForLogAsync(string name, Func<string, bool> holds)
    {
        for (var i = 0; i < 400; i++)
        {
            var text = LogFile(name);
            if (holds(text)) return text;
            await Task.Delay(25);
        }
        Assert.Fail($"{name} never held what the test waited for; it has:\n{LogFile(name)}");
        return "";
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _dir.Dispose();
    }

    private static HttpClient Client(Uri url) => new() { BaseAddress = url, Timeout = TimeSpan.FromSeconds(120), DefaultRequestHeaders = { Accept = { new MediaTypeWithQualityHeaderValue("*/*") } } };
}
