using System.Net;
using Microsoft.Extensions.Logging;
using ServeSharp.Handlers;
using ServeSharp.Loader;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Http;
using ServeSharp.Server.Metrics;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server;

/// <summary>What the command line adds to config.properties.</summary>
public sealed record StartOptions
{
    public required ServerConfig Config { get; init; }
    public IReadOnlyList<string> Models { get; init; } = [];
    public bool NoConfigSnapshot { get; init; }
    public string LogDirectory { get; init; } = "logs";
}

/// <summary>
/// The running server: the model manager and its worker pools, and the three APIs (inference, management,
/// metrics), each its own Kestrel app on its own address. Stopping lets in-flight requests finish first.
/// </summary>
public sealed partial class ServerHost : IAsyncDisposable
{
    private readonly List<WebApplication> _apps;
    private readonly ModelManager _models;
    private readonly HttpClient _http;
    private readonly ILogger _logger;

    private ServerHost(List<WebApplication> apps, ModelManager models, HttpClient http, ILogger logger, TokenAuthorization auth)
    {
        _apps = apps;
        _models = models;
        _http = http;
        _logger = logger;
        Auth = auth;
    }

    public TokenAuthorization Auth { get; }

    public static async Task<ServerHost> StartAsync(StartOptions options, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        var config = options.Config;
        var logger = loggers.CreateLogger("ServeSharp");
        foreach (var warning in config.Warnings) LogWarning(logger, warning);

        var metrics = new ServerMetrics();
        var http = new HttpClient { Timeout = TimeSpan.FromMinutes(10) };
        var workLoad = new WorkLoadManager(config, metrics, loggers);
        var snapshots = new SnapshotStore(Path.Combine(options.LogDirectory, "config"), enabled: true);
        var models = new ModelManager(config, workLoad, new ModelSource(config, http), new HandlerResolver(BuiltInHandlers.All), snapshots, loggers);
        var auth = config.DisableTokenAuthorization ? TokenAuthorization.Disabled : TokenAuthorization.CreateAndWrite("key_file.json");
        if (auth.Enabled) LogKeys(logger, auth.KeyFile!);

        // Models register before the APIs listen, so no early request sees a 404; their workers load in the background.
        await LoadStartupModelsAsync(options, models, snapshots, logger, cancellationToken);

        var apps = new List<WebApplication>
        {
            BuildApp(config.InferenceAddress, config, loggers, metrics, app =>
            {
                app.Use(auth.Require(auth.InferenceKey, "inference", "/ping", "/api-description"));
                InferenceApi.Map(app, models, config);
            }),
            BuildApp(config.ManagementAddress, config, loggers, metrics, app =>
            {
                app.Use(auth.Require(auth.ManagementKey, "management", "/api-description"));
                ManagementApi.Map(app, models, config);
            }),
            BuildApp(config.MetricsAddress, config, loggers, metrics: null, app => MetricsApi.Map(app, metrics)),
        };
        foreach (var app in apps) await app.StartAsync(cancellationToken);
        LogListening(logger, config.InferenceAddress, config.ManagementAddress, config.MetricsAddress);
        return new ServerHost(apps, models, http, logger, auth);
    }

    /// <summary>Stops listening (in-flight requests finish), then stops every worker.</summary>
    public async Task StopAsync()
    {
        LogStopping(_logger);
        await Task.WhenAll(_apps.Select(a => a.StopAsync(CancellationToken.None)));
        await _models.StopAllAsync();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var app in _apps) await app.DisposeAsync();
        _http.Dispose();
    }

    private static async Task LoadStartupModelsAsync(StartOptions options, ModelManager models, SnapshotStore snapshots, ILogger logger, CancellationToken cancellationToken)
    {
        var requests = new List<RegisterRequest>();
        var restored = options.NoConfigSnapshot ? [] : snapshots.LoadLatest();
        foreach (var (name, version, s) in restored)
        {
            requests.Add(new RegisterRequest
            {
                Url = s.MarName ?? name + ".mar", ModelName = name, InitialWorkers = s.MinWorkers, MaxWorkers = s.MaxWorkers,
                BatchSize = s.BatchSize, MaxBatchDelay = s.MaxBatchDelay, ResponseTimeout = s.ResponseTimeout,
                MakeDefault = s.DefaultVersion, Synchronous = false, LoadedAtStartup = true,
            });
        }
        if (restored.Count > 0) LogRestored(logger, restored.Count);

        var wanted = options.Models.Count > 0 ? options.Models : options.Config.LoadModels;
        foreach (var spec in ExpandModels(wanted, options.Config.ModelStore))
        {
            var eq = spec.IndexOf('=');
            var (name, url) = eq > 0 ? (spec[..eq], spec[(eq + 1)..]) : ((string?)null, spec);
            if (name is not null && requests.Any(r => r.ModelName == name)) continue;
            requests.Add(new RegisterRequest { Url = url, ModelName = name, Synchronous = false, LoadedAtStartup = true });
        }

        foreach (var request in requests)
        {
            try
            {
                await models.RegisterAsync(request, cancellationToken);
            }
            catch (Exception e) when (e is ApiException or IOException)
            {
                // One bad archive costs only its own model, never the server.
                LogModelFailed(logger, request.Url, e.Message);
            }
        }
    }

    /// <summary>"all" means every archive in the model store (TorchServe's --models all).</summary>
    private static IEnumerable<string> ExpandModels(IReadOnlyList<string> specs, string? store)
    {
        foreach (var spec in specs)
        {
            if (!spec.Equals("all", StringComparison.OrdinalIgnoreCase))
            {
                yield return spec;
                continue;
            }
            if (store is null || !Directory.Exists(store)) continue;
            foreach (var entry in Directory.EnumerateFileSystemEntries(store).Order(StringComparer.Ordinal))
            {
                var file = Path.GetFileName(entry);
                if (file.EndsWith(".mar", StringComparison.Ordinal) || file.EndsWith(".tar.gz", StringComparison.Ordinal)
                    || (Directory.Exists(entry) && File.Exists(Path.Combine(entry, "MAR-INF", "MANIFEST.json"))))
                    yield return file;
            }
        }
    }

    private static WebApplication BuildApp(Uri address, ServerConfig config, ILoggerFactory loggers, ServerMetrics? metrics, Action<WebApplication> map)
    {
        if (address.Scheme != "http")
            throw new FormatException($"{address}: only http:// addresses are supported (terminate TLS in front of ServeSharp)");
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(loggers);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(Math.Max(30, config.DefaultResponseTimeout)));
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = config.MaxRequestSize;
            var port = address.Port;
            if (address.Host is "localhost") k.ListenLocalhost(port);
            else if (address.Host is "0.0.0.0" or "*" or "+") k.ListenAnyIP(port);
            else k.Listen(IPAddress.Parse(address.Host.Trim('[', ']')), port);
        });
        var app = builder.Build();
        if (metrics is not null)
        {
            app.Use(async (http, next) =>
            {
                await next(http);
                metrics.RequestCompleted(http.Response.StatusCode);
            });
        }
        map(app);
        return app;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Warning}")]
    private static partial void LogWarning(ILogger logger, string warning);

    [LoggerMessage(Level = LogLevel.Information, Message = "Token authorization is on: keys are in {KeyFile}")]
    private static partial void LogKeys(ILogger logger, string keyFile);

    [LoggerMessage(Level = LogLevel.Information, Message = "Restoring {Count} model versions from the last config snapshot")]
    private static partial void LogRestored(ILogger logger, int count);

    [LoggerMessage(Level = LogLevel.Error, Message = "Failed to load model {Url}: {Error}")]
    private static partial void LogModelFailed(ILogger logger, string url, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Inference API on {Inference}, management API on {Management}, metrics API on {Metrics}")]
    private static partial void LogListening(ILogger logger, Uri inference, Uri management, Uri metrics);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stopping: finishing in-flight requests, then the workers")]
    private static partial void LogStopping(ILogger logger);
}
