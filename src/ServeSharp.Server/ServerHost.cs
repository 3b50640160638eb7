using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using ServeSharp.Handlers;
using ServeSharp.Loader;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Grpc;
using ServeSharp.Server.Http;
using ServeSharp.Server.Metrics;
using ServeSharp.Server.Wlm;
using ServeSharp.Sdk;

namespace ServeSharp.Server;

/// <summary>
/// The running server: one generic host holding the model manager and its worker pools (hosted services), and one
/// Kestrel with a listener per distinct address serving the inference, management and metrics APIs over REST, and
/// TorchServe's gRPC inference and management APIs on HTTP/2 listeners of their own, and KServe's v1/v2 on a listener
/// of its own when the server runs under KServe. Stopping drains (<see cref="ServerDrain"/>): readiness goes false, new
/// requests are refused, in-flight ones finish within shutdown_grace_period; then the listeners close, the models
/// drain and the last snapshot is written.
/// </summary>
internal sealed partial class ServerHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Dictionary<Api, ListenOptions> _listeners;
    private readonly HashSet<Api> _tls;
    private readonly ServerDrain _drain;
    private readonly TimeSpan _grace;

    private ServerHost(WebApplication app, Dictionary<Api, ListenOptions> listeners, HashSet<Api> tls, TimeSpan grace)
    {
        _app = app;
        _listeners = listeners;
        _tls = tls;
        _drain = app.Services.GetRequiredService<ServerDrain>();
        _grace = grace;
    }

    /// <summary>The address an API really listens on (the bound port when the configuration said 0).</summary>
    public Uri AddressOf(Api api)
    {
        var (apis, listen) = _listeners.First(kv => kv.Key.HasFlag(api));
        return new Uri($"{(_tls.Contains(apis) ? "https" : "http")}://{listen.IPEndPoint!}");
    }

    /// <summary>
    /// Builds and starts the host. <paramref name="time"/> is for tests that drive batching and timeouts;
    /// <paramref name="cudaProblem"/> for tests that check GPU assignment on machines without CUDA (null: probe ONNX Runtime).
    /// </summary>
    public static async Task<ServerHost> StartAsync(StartOptions options, ILoggerFactory loggers, CancellationToken cancellationToken, TimeProvider? time = null,
        IReadOnlyDictionary<string, Func<Sdk.IModelHandler>>? extraBuiltIns = null, Func<string?>? cudaProblem = null)
    {
        var config = options.Config;
        // number_of_gpu defaults to the GPUs this process can see (TorchServe counts them with nvidia-smi).
        var gpus = config.NumberOfGpu is { } configured ? (Count: configured, How: "number_of_gpu in config.properties") : GpuInventory.Detect();
        config = config with { NumberOfGpu = gpus.Count };
        options = options with { Config = config };
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(loggers);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(Math.Max(30, config.DefaultResponseTimeout)));

        var handlers = new Dictionary<string, Func<Sdk.IModelHandler>>(BuiltInHandlers.All, StringComparer.Ordinal);
        foreach (var (name, factory) in extraBuiltIns ?? new Dictionary<string, Func<Sdk.IModelHandler>>()) handlers[name] = factory;

        var s = builder.Services;
        s.AddSingleton(config);
        s.AddSingleton(options);
        s.AddSingleton(time ?? TimeProvider.System);
        s.AddSingleton<ServerMetrics>();
        s.AddSingleton<PredictionTiming>();
        s.AddSingleton<ServerDrain>();
        // Archive downloads: ModelSource follows redirects itself, checking every hop against allowed_urls.
        s.AddSingleton(new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false }) { Timeout = TimeSpan.FromMinutes(10) });
        s.AddSingleton<ModelSource>();
        var folders = new ServerFolders();
        s.AddSingleton(folders);
        s.AddSingleton(new HandlerResolver(handlers, folders.CompiledHandlers));
        s.AddSingleton(p => new SnapshotStore(Path.Combine(options.LogDirectory, "config"), enabled: !options.NoConfigSnapshot, config, p.GetRequiredService<TimeProvider>()));
        s.AddSingleton<WorkLoadManager>();
        s.AddSingleton(new DevicePlanner(config, cudaProblem ?? (() => OrtSessionFactory.CudaUnavailableReason)));
        s.AddSingleton<Conversion.RegisterConversion>();
        s.AddSingleton<ModelManager>();
        // TorchServe writes key_file.json in the working directory; so do we (tests and containers pick the directory).
        s.AddSingleton(config.DisableTokenAuthorization ? TokenAuthorization.Disabled
            : TokenAuthorization.CreateAndWrite(options.KeyFile ?? "key_file.json", config.TokenExpirationMinutes, time ?? TimeProvider.System));
        // Hosted services start in this order and stop in reverse: snapshots are written until the very end, and the
        // scratch folders go after that.
        s.AddHostedService(_ => folders);
        s.AddSingleton<SnapshotWriter>();
        s.AddHostedService(p => p.GetRequiredService<SnapshotWriter>());
        s.AddHostedService<WorkerPoolsService>();
        // metrics_config (or the default metrics.yaml) is read before anything starts: a bad file stops the start.
        s.AddSingleton(MetricsConfiguration.Load(config.MetricsConfig));
        s.AddHostedService<SystemMetricsCollector>();
        GrpcApis.AddServices(s, config);

        var listeners = new Dictionary<Api, ListenOptions>();
        var plan = ListenerPlan(config);
        var tls = plan.Any(l => l.Address.Scheme == "https") || config.EnableGrpcSsl ? TlsCertificate.Load(config) : null;
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = config.MaxRequestSize;
            foreach (var (address, apis) in plan) listeners[apis] = Listen(k, address, apis, config, tls);
        });

        var app = builder.Build();
        app.Use(AccessLog.Handle(loggers, app.Services.GetRequiredService<TimeProvider>()));
        app.Use(EdgeErrors.Handle(app.Services.GetRequiredService<ServerMetrics>(), loggers.CreateLogger("ServeSharp.Http")));
        if (Cors.For(config) is { } cors) app.Use(cors.Handle);
        app.Use(ApiPipeline.SelectApi);
        app.UseRouting();
        app.Use(next => ApiPipeline.Authorize(app.Services.GetRequiredService<TokenAuthorization>(), next));
        app.Use(next => ApiPipeline.Admit(app.Services.GetRequiredService<ServerDrain>(), next));
        var models = app.Services.GetRequiredService<ModelManager>();
        var timing = app.Services.GetRequiredService<PredictionTiming>();
        ApiPipeline.Map(app, plan.Select(l => l.Apis), [
            .. app.Services.GetRequiredService<TokenAuthorization>().Routes(),
            .. InferenceApi.Routes(models, config, timing),
            .. KServeV1Api.Routes(models, config, timing),
            .. OipApi.Routes(models, config, timing),
            .. PlaygroundApi.Routes(config),
            .. ManagementApi.Routes(models, config),
            .. MetricsApi.Routes(app.Services.GetRequiredService<ServerMetrics>()),
        ]);
        GrpcApis.Map(app, plan.Select(l => l.Apis));

        var logger = loggers.CreateLogger("ServeSharp");
        foreach (var warning in config.Warnings) LogWarning(logger, warning);
        foreach (var warning in app.Services.GetRequiredService<ServerMetrics>().Warnings) LogWarning(logger, warning);
        var auth = app.Services.GetRequiredService<TokenAuthorization>();
        if (auth.Enabled) LogKeys(logger, auth.KeyFile!);
        LogGpus(logger, gpus.Count, gpus.How, gpus.Count == 0 ? "not needed" : OrtSessionFactory.CudaUnavailableReason ?? "usable");

        await app.StartAsync(cancellationToken);
        var host = new ServerHost(app, listeners, [.. plan.Where(l => l.Address.Scheme == "https" || (config.EnableGrpcSsl && IsGrpc(l.Apis))).Select(l => l.Apis)],
            TimeSpan.FromSeconds(config.ShutdownGracePeriod));
        Uri inference = host.AddressOf(Api.Inference), management = host.AddressOf(Api.Management), metrics = host.AddressOf(Api.Metrics);
        LogListening(logger, inference, management, metrics);
        Uri grpcInference = host.AddressOf(Api.GrpcInference), grpcManagement = host.AddressOf(Api.GrpcManagement);
        LogGrpcListening(logger, grpcInference, grpcManagement);
        if (config.KServeAddress is not null)
        {
            var kserve = host.AddressOf(Api.KServe);
            LogKServeListening(logger, kserve, config.ServiceEnvelope ?? "none");
        }
        return host;
    }

    /// <summary>
    /// Drains, then stops: readiness goes false and new requests are refused while the admitted ones finish, for up to
    /// shutdown_grace_period (or until <paramref name="now"/> fires: a second signal); what still runs then is aborted.
    /// Then the listeners close, every model drains, and the last snapshot is written.
    /// </summary>
    public async Task StopAsync(CancellationToken now = default)
    {
        var logger = _app.Services.GetRequiredService<ILogger<ServerHost>>();
        _drain.Begin();
        LogStopping(logger, _drain.InFlight, _grace.TotalSeconds);
        using (var grace = CancellationTokenSource.CreateLinkedTokenSource(now))
        {
            grace.CancelAfter(_grace);
            try
            {
                await _drain.WhenIdleAsync(grace.Token);
            }
            catch (OperationCanceledException)
            {
                LogGraceOver(logger, _drain.AbortAll());
            }
        }
        await _app.StopAsync(CancellationToken.None);
        _app.Services.GetRequiredService<TokenAuthorization>().RemoveKeyFile();
    }

    public async ValueTask DisposeAsync()
    {
        _app.Services.GetRequiredService<TokenAuthorization>().RemoveKeyFile();
        await _app.DisposeAsync();
    }

    // Equal addresses share one listener serving both APIs (as KServe's configurations put them); port 0 asks for a
    // fresh port each time, so it is never equal. REST and gRPC never share one: gRPC's listeners speak HTTP/2 only.
    private static List<(Uri Address, Api Apis)> ListenerPlan(ServerConfig config)
    {
        var wanted = new List<(Uri, Api)>
        {
            (config.InferenceAddress, Api.Inference), (config.ManagementAddress, Api.Management), (config.MetricsAddress, Api.Metrics),
            (GrpcAddress(config.GrpcInference), Api.GrpcInference), (GrpcAddress(config.GrpcManagement), Api.GrpcManagement),
        };
        if (config.KServeAddress is { } kserve) wanted.Add((kserve, Api.KServe));
        var plan = wanted
            .GroupBy(l => (l.Item1.Host, l.Item1.Port, Grpc: IsGrpc(l.Item2), Fresh: l.Item1.Port == 0 ? l.Item2 : Api.None))
            .Select(g => g.Select(l => l.Item1.Scheme).Distinct().Count() == 1 ? (g.First().Item1, g.Aggregate(Api.None, (all, l) => all | l.Item2))
                : throw new FormatException($"config.properties: {string.Join(" and ", g.Select(l => l.Item1))} share a port but not the scheme: one listener is either http or https"))
            .ToList();
        // 0.0.0.0:8080 and 127.0.0.1:8080 cannot both be bound: say which settings collide before Kestrel fails to bind.
        foreach (var (a, b) in plan.SelectMany((x, i) => plan.Skip(i + 1).Select(y => (x, y))))
        {
            if (a.Item1.Port != 0 && a.Item1.Port == b.Item1.Port && (IsWildcard(a.Item1) || IsWildcard(b.Item1)))
                throw new FormatException($"config.properties: {Describe(a)} and {Describe(b)} want the same port {a.Item1.Port} on overlapping interfaces; "
                    + "give them the same address (one shared listener) or different ports (KServe's config.properties puts TorchServe's APIs on 8085 and leaves 8080 to KServe)");
        }
        return plan;
    }

    private static bool IsWildcard(Uri address) => address.Host.Trim('[', ']') is "0.0.0.0" or "*" or "+" or "::";

    private static string Describe((Uri Address, Api Apis) listener) =>
        $"{string.Join(" and ", Enum.GetValues<Api>().Where(a => a != Api.None && listener.Apis.HasFlag(a)).Select(KeyOf))} {listener.Address}";

    private static string KeyOf(Api api) => api switch
    {
        Api.Inference => "inference_address",
        Api.Management => "management_address",
        Api.Metrics => "metrics_address",
        Api.GrpcInference => "grpc_inference_address/port",
        Api.GrpcManagement => "grpc_management_address/port",
        _ => "kserve_address (KServe's v1/v2; on with TS_SERVICE_ENVELOPE)",
    };

    private static bool IsGrpc(Api apis) => (apis & (Api.GrpcInference | Api.GrpcManagement)) != Api.None;

    private static Uri GrpcAddress(GrpcListen listen) =>
        new($"http://{(listen.Host.Contains(':', StringComparison.Ordinal) ? $"[{listen.Host}]" : listen.Host)}:{listen.Port}");

    private static ListenOptions Listen(KestrelServerOptions kestrel, Uri address, Api apis, ServerConfig config, X509Certificate2? tls)
    {
        var host = address.Host.Trim('[', ']');
        var ip = host switch
        {
            "localhost" => IPAddress.Loopback,
            "0.0.0.0" or "*" or "+" => IPAddress.Any,
            _ => IPAddress.Parse(host),
        };
        ListenOptions? bound = null;
        kestrel.Listen(ip, address.Port, o =>
        {
            bound = o;
            if (IsGrpc(apis))
            {
                // Plaintext gRPC is HTTP/2 with prior knowledge (h2c); with TLS, ALPN agrees on HTTP/2.
                o.Protocols = HttpProtocols.Http2;
                if (config.EnableGrpcSsl) o.UseHttps(tls!);
            }
            else if (address.Scheme == "https")
            {
                o.UseHttps(tls!);
            }
            o.Use(next => connection =>
            {
                connection.Items[ApiPipeline.ConnectionKey] = apis;
                return next(connection);
            });
        });
        return bound!;
    }

    [LoggerMessage(EventId = 6, Level = LogLevel.Information, Message = "GPUs: number_of_gpu {Count} ({How}); ONNX Runtime's CUDA provider: {Cuda}")]
    private static partial void LogGpus(ILogger logger, int count, string how, string cuda);

    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "{Warning}")]
    private static partial void LogWarning(ILogger logger, string warning);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Token authorization is on: keys are in {KeyFile}")]
    private static partial void LogKeys(ILogger logger, string keyFile);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "Inference API on {Inference}, management API on {Management}, metrics API on {Metrics}")]
    private static partial void LogListening(ILogger logger, Uri inference, Uri management, Uri metrics);

    [LoggerMessage(EventId = 7, Level = LogLevel.Information, Message = "gRPC inference API on {Inference}, gRPC management API on {Management}")]
    private static partial void LogGrpcListening(ILogger logger, Uri inference, Uri management);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "Stopping: readiness is false and new requests are refused; {InFlight} in-flight requests have {Grace} s to finish, then the workers drain")]
    private static partial void LogStopping(ILogger logger, int inFlight, double grace);

    [LoggerMessage(EventId = 8, Level = LogLevel.Warning, Message = "Stopping: shutdown_grace_period is over (or a second signal came); {Aborted} requests still in flight were aborted")]
    private static partial void LogGraceOver(ILogger logger, int aborted);

    [LoggerMessage(EventId = 9, Level = LogLevel.Information, Message = "KServe v1 and Open Inference Protocol v2 on {Address} (service envelope: {Envelope})")]
    private static partial void LogKServeListening(ILogger logger, Uri address, string envelope);
}
