using System.Globalization;
using System.Text.Json;

namespace ServeSharp.Server.Configuration;

/// <summary>
/// config.properties, typed. Defaults follow TorchServe's where ServeSharp has the same concept; every key is
/// documented in the repository's config.properties. Unknown keys become warnings, never failures.
/// </summary>
internal sealed record ServerConfig
{
    public Uri InferenceAddress { get; init; } = new("http://127.0.0.1:8080");
    public Uri ManagementAddress { get; init; } = new("http://127.0.0.1:8081");
    public Uri MetricsAddress { get; init; } = new("http://127.0.0.1:8082");

    /// <summary>TorchServe's gRPC APIs: grpc_inference_address / grpc_inference_port (7070), and the management pair (7071).</summary>
    public GrpcListen GrpcInference { get; init; } = new("127.0.0.1", 7070);
    public GrpcListen GrpcManagement { get; init; } = new("127.0.0.1", 7071);

    /// <summary>enable_grpc_ssl: TLS on both gRPC ports with the PEM pair TorchServe uses (certificate_file, private_key_file).</summary>
    public bool EnableGrpcSsl { get; init; }
    public string? CertificateFile { get; init; }
    public string? PrivateKeyFile { get; init; }

    /// <summary>keystore / keystore_pass / keystore_type: TorchServe's other way to give the TLS certificate (PKCS12 only here).</summary>
    public string? Keystore { get; init; }
    public string? KeystorePass { get; init; }
    public string KeystoreType { get; init; } = "PKCS12";

    /// <summary>cors_allowed_origin / _methods / _headers: CORS on the REST listeners, off unless an origin is given.</summary>
    public string? CorsAllowedOrigin { get; init; }
    public IReadOnlyList<string> CorsAllowedMethods { get; init; } = [];
    public IReadOnlyList<string> CorsAllowedHeaders { get; init; } = [];

    /// <summary>token_expiration_min: how long the management and inference keys live (TorchServe: 60 minutes).</summary>
    public double TokenExpirationMinutes { get; init; } = 60;

    /// <summary>metrics_mode: <c>log</c> (TorchServe's default: metrics also go to ts_metrics.log / model_metrics.log) or
    /// <c>prometheus</c> (the metrics API only; it answers in both modes).</summary>
    public Metrics.MetricsMode MetricsMode { get; init; } = Metrics.MetricsMode.Log;

    /// <summary>metrics_config: a metrics.yaml deciding which metrics exist and their dimensions (null: the default one).</summary>
    public string? MetricsConfig { get; init; }

    /// <summary>metric_time_interval: seconds between system metric collections (TorchServe: 60); disable_system_metrics.</summary>
    public int MetricTimeInterval { get; init; } = 60;
    public bool DisableSystemMetrics { get; init; }
    public string? ModelStore { get; init; }
    public IReadOnlyList<string> LoadModels { get; init; } = [];
    public int DefaultWorkersPerModel { get; init; } = 1;
    public int JobQueueSize { get; init; } = 100;
    public int DefaultResponseTimeout { get; init; } = 120;
    public int DefaultStartupTimeout { get; init; } = 120;
    public int DefaultBatchSize { get; init; } = 1;
    public int DefaultMaxBatchDelay { get; init; } = 100;
    public long MaxRequestSize { get; init; } = 6_553_500;
    public long MaxResponseSize { get; init; } = 6_553_500;
    /// <summary>number_of_gpu; null until the host fills in the GPUs it detects (<see cref="GpuInventory"/>).</summary>
    public int? NumberOfGpu { get; init; }

    /// <summary>default_worker_isolation: "process" or "in-process" for every model without its own workerIsolation;
    /// null: process for archive (.cs/.dll) handlers, in-process for built-ins.</summary>
    public string? DefaultWorkerIsolation { get; init; }

    /// <summary>worker_user: when the server runs as root, worker processes run as this user.</summary>
    public string? WorkerUser { get; init; }
    public IReadOnlyList<string> AllowedUrls { get; init; } = ["file://.*", "http(s)?://.*"];
    public bool DisableTokenAuthorization { get; init; }
    public bool EnableModelApi { get; init; }

    /// <summary>enable_playground: the inference port serves the browser playground at / and /playground (off: it is a browser surface).</summary>
    public bool EnablePlayground { get; init; }
    public bool EnableEnvVarsConfig { get; init; }
    public long MaxArchiveBytes { get; init; } = 4L * 1024 * 1024 * 1024;

    /// <summary>convert_torchserve_archives: registering a TorchServe archive of a PyTorch model converts it to ONNX (once,
    /// cached by the archive's hash) instead of answering 400 with the servesharp convert command.</summary>
    public bool ConvertTorchServeArchives { get; init; }

    /// <summary>The <c>models</c> JSON block: model name → version → settings.</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, ModelSettings>> Models { get; init; } =
        new Dictionary<string, IReadOnlyDictionary<string, ModelSettings>>();

    /// <summary>
    /// service_envelope (TS_SERVICE_ENVELOPE, as KServe's TorchServe runtime sets it): "kserve" or "kservev2" says the
    /// server runs under KServe. Both open <see cref="KServeAddress"/>, which serves KServe v1 and OIP v2 alike.
    /// </summary>
    public string? ServiceEnvelope { get; init; }

    /// <summary>
    /// kserve_address: where KServe's v1 and OIP v2 REST protocols are served besides the inference API's listener
    /// (KServe routes them to container port 8080, where TorchServe's image runs its Python wrapper). Defaults to
    /// http://0.0.0.0:8080 when a service envelope is set; null (off) otherwise.
    /// </summary>
    public Uri? KServeAddress { get; init; }

    /// <summary>KServe's container port for v1/v2 traffic, on every interface (the pod's IP is what KServe routes to).</summary>
    public static readonly Uri DefaultKServeAddress = new("http://0.0.0.0:8080");

    /// <summary>shutdown_grace_period: seconds a stop waits for in-flight requests before it cancels them (under
    /// Kubernetes' default 30 s terminationGracePeriodSeconds, so the models drain and the snapshot is written in time).</summary>
    public int ShutdownGracePeriod { get; init; } = 20;

    public IReadOnlyList<string> Warnings { get; init; } = [];

    /// <summary>
    /// Every key=value the config was built from (TS_* overrides applied), as given: config snapshots record them as
    /// TorchServe's do, and <c>model_snapshot</c> (a TorchServe snapshot used as the config file) restores its models.
    /// </summary>
    public IReadOnlyDictionary<string, string> Properties { get; init; } = new Dictionary<string, string>();

    /// <summary>What TS_SERVICE_ENVELOPE's values mean here; TorchServe's "json" and "body" envelopes are not supported.</summary>
    public static readonly IReadOnlyList<string> ServiceEnvelopes = ["kserve", "kservev2"];

    // TorchServe keys with no meaning here (Java/Netty/Python tuning, workflows, plugins): each is logged once at start
    // as ignored, never dropped silently.
    private static readonly HashSet<string> IgnoredTorchServeKeys =
    [
        "number_of_netty_threads", "netty_client_threads", "default_service_handler", "async_logging", "vmargs",
        "install_py_dep_per_model", "workflow_store",
        "model_metrics_auto_detect", "system_metrics_cmd", "enable_metrics_api", "grpc_inference_max_connection_age_ms", "grpc_management_max_connection_age_ms",
        "grpc_inference_max_connection_age_grace_ms", "grpc_management_max_connection_age_grace_ms",
        "use_native_io", "prefer_direct_buffer", "plugins_path", "ts_allowed_urls", "tsConfigFile",
    ];

    // Environment variables TorchServe reads that are not TS_<config key> (TS_CONFIG_FILE picks the file itself).
    private static readonly HashSet<string> NotConfigKeys = ["config_file"];

    /// <summary>
    /// Builds the config the way TorchServe's ConfigManager does: config.properties, then the command line over it, then
    /// (only with enable_envvars_config=true) the TS_* environment variables over both.
    /// </summary>
    public static ServerConfig From(IReadOnlyDictionary<string, string> properties, IReadOnlyDictionary<string, string>? environment = null,
        CommandLineSettings? commandLine = null)
    {
        var values = new Dictionary<string, string>(properties, StringComparer.Ordinal);
        if (commandLine?.ModelStore is { } store) values["model_store"] = store;
        if (commandLine?.DisableTokenAuthorization == true) values["disable_token_authorization"] = "true";
        if (commandLine?.EnableModelApi == true) values["enable_model_api"] = "true";
        if (Bool(values, "enable_envvars_config") == true && environment is not null)
        {
            foreach (var (name, value) in environment)
            {
                if (name.StartsWith("TS_", StringComparison.Ordinal) && !NotConfigKeys.Contains(name[3..].ToLowerInvariant()))
                    values[name[3..].ToLowerInvariant()] = value;
            }
        }

        // KServe sets TS_SERVICE_ENVELOPE on every TorchServe pod; it is honoured even without enable_envvars_config,
        // which KServe users' config.properties may lack (with it, it already came in above).
        if (!values.ContainsKey("service_envelope") && environment?.GetValueOrDefault("TS_SERVICE_ENVELOPE") is { Length: > 0 } envelopeVariable)
            values["service_envelope"] = envelopeVariable;
        var envelope = Envelope(values.GetValueOrDefault("service_envelope"));

        var warnings = new List<string>();
        var defaults = new ServerConfig();
        // Under KServe, clients never carry TorchServe's keys (KServe's own wrapper sends none: pytorch/serve#3301):
        // token authorization is off unless disable_token_authorization is given somewhere.
        var tokenDefault = false;
        if (envelope is not null && !values.ContainsKey("disable_token_authorization"))
        {
            tokenDefault = true;
            warnings.Add($"service_envelope {envelope} (KServe): token authorization is off, as KServe's clients send no TorchServe keys; set disable_token_authorization=false to keep it on");
        }
        var config = new ServerConfig
        {
            InferenceAddress = Address(values, "inference_address", defaults.InferenceAddress),
            ManagementAddress = Address(values, "management_address", defaults.ManagementAddress),
            MetricsAddress = Address(values, "metrics_address", defaults.MetricsAddress),
            GrpcInference = new(values.GetValueOrDefault("grpc_inference_address") ?? defaults.GrpcInference.Host,
                Int(values, "grpc_inference_port") ?? defaults.GrpcInference.Port),
            GrpcManagement = new(values.GetValueOrDefault("grpc_management_address") ?? defaults.GrpcManagement.Host,
                Int(values, "grpc_management_port") ?? defaults.GrpcManagement.Port),
            EnableGrpcSsl = Bool(values, "enable_grpc_ssl") ?? false,
            CertificateFile = values.GetValueOrDefault("certificate_file"),
            PrivateKeyFile = values.GetValueOrDefault("private_key_file"),
            Keystore = values.GetValueOrDefault("keystore") is { Length: > 0 } keystore ? keystore : null,
            KeystorePass = values.GetValueOrDefault("keystore_pass"),
            KeystoreType = values.GetValueOrDefault("keystore_type") is { Length: > 0 } type ? type : defaults.KeystoreType,
            CorsAllowedOrigin = values.GetValueOrDefault("cors_allowed_origin") is { Length: > 0 } origin ? origin : null,
            CorsAllowedMethods = List(values.GetValueOrDefault("cors_allowed_methods")),
            CorsAllowedHeaders = List(values.GetValueOrDefault("cors_allowed_headers")),
            TokenExpirationMinutes = Double(values, "token_expiration_min") ?? defaults.TokenExpirationMinutes,
            MetricsMode = MetricsModeOf(values.GetValueOrDefault("metrics_mode")),
            MetricsConfig = values.GetValueOrDefault("metrics_config") is { Length: > 0 } metricsConfig ? metricsConfig : null,
            MetricTimeInterval = Int(values, "metric_time_interval") ?? defaults.MetricTimeInterval,
            DisableSystemMetrics = Bool(values, "disable_system_metrics") ?? false,
            ModelStore = values.GetValueOrDefault("model_store"),
            LoadModels = List(values.GetValueOrDefault("load_models")),
            DefaultWorkersPerModel = Int(values, "default_workers_per_model") ?? defaults.DefaultWorkersPerModel,
            JobQueueSize = Int(values, "job_queue_size") ?? defaults.JobQueueSize,
            DefaultResponseTimeout = Int(values, "default_response_timeout") ?? defaults.DefaultResponseTimeout,
            DefaultStartupTimeout = Int(values, "default_startup_timeout") ?? defaults.DefaultStartupTimeout,
            DefaultBatchSize = Int(values, "batch_size") ?? defaults.DefaultBatchSize,
            DefaultMaxBatchDelay = Int(values, "max_batch_delay") ?? defaults.DefaultMaxBatchDelay,
            MaxRequestSize = Long(values, "max_request_size") ?? defaults.MaxRequestSize,
            MaxResponseSize = Long(values, "max_response_size") ?? defaults.MaxResponseSize,
            NumberOfGpu = Int(values, "number_of_gpu"),
            DefaultWorkerIsolation = Isolation(values.GetValueOrDefault("default_worker_isolation")),
            WorkerUser = values.GetValueOrDefault("worker_user") is { Length: > 0 } user ? user : null,
            AllowedUrls = values.TryGetValue("allowed_urls", out var urls) ? List(urls) : defaults.AllowedUrls,
            DisableTokenAuthorization = Bool(values, "disable_token_authorization") ?? tokenDefault,
            EnableModelApi = Bool(values, "enable_model_api") ?? false,
            EnablePlayground = Bool(values, "enable_playground") ?? false,
            EnableEnvVarsConfig = Bool(values, "enable_envvars_config") ?? false,
            MaxArchiveBytes = Long(values, "max_archive_size") ?? defaults.MaxArchiveBytes,
            ConvertTorchServeArchives = Bool(values, "convert_torchserve_archives") ?? false,
            Models = values.TryGetValue("models", out var models) ? ParseModels(models) : defaults.Models,
            ServiceEnvelope = envelope,
            KServeAddress = values.ContainsKey("kserve_address") || envelope is not null ? Address(values, "kserve_address", DefaultKServeAddress) : null,
            ShutdownGracePeriod = Int(values, "shutdown_grace_period") ?? defaults.ShutdownGracePeriod,
            Warnings = warnings,
            Properties = values,
        };

        foreach (var key in values.Keys.Order(StringComparer.Ordinal))
        {
            if (IgnoredTorchServeKeys.Contains(key)) warnings.Add($"config.properties: '{key}' is a TorchServe setting ServeSharp does not use; ignored");
            else if (!KnownKeys.Contains(key)) warnings.Add($"config.properties: unknown key '{key}' is ignored");
        }
        if (commandLine?.LogConfig is { } logConfig)
            warnings.Add($"--log-config {logConfig}: log4j2 configurations are not read; ServeSharp writes TorchServe's default log files (ts_log.log, model_log.log, access_log.log, ts_metrics.log, model_metrics.log) in LOG_LOCATION");
        if (config.TokenExpirationMinutes <= 0) throw new FormatException("config.properties: token_expiration_min must be a positive number of minutes");
        if (!config.KeystoreType.Equals("PKCS12", StringComparison.OrdinalIgnoreCase))
            throw new FormatException($"config.properties: keystore_type '{config.KeystoreType}' is not supported: convert the keystore to PKCS12 (keytool -importkeystore -deststoretype PKCS12) or give certificate_file and private_key_file (PEM)");
        if (config.MetricTimeInterval < 1) throw new FormatException("config.properties: metric_time_interval must be at least 1 second");
        if (config.ShutdownGracePeriod < 0) throw new FormatException("config.properties: shutdown_grace_period must be 0 or more seconds");
        if (config.JobQueueSize < 1) throw new FormatException("config.properties: job_queue_size must be at least 1");
        if (config.EnableGrpcSsl && !TlsCertificate.Configured(config))
            throw new FormatException("config.properties: enable_grpc_ssl=true needs certificate_file and private_key_file (PEM), or keystore and keystore_pass (PKCS12)");
        return config;
    }

    private static readonly HashSet<string> KnownKeys =
    [
        "metrics_mode", "metrics_config", "metric_time_interval", "disable_system_metrics",
        "inference_address", "management_address", "metrics_address", "model_store", "load_models",
        "default_workers_per_model", "job_queue_size", "default_response_timeout", "default_startup_timeout",
        "batch_size", "max_batch_delay", "max_request_size", "max_response_size", "number_of_gpu", "allowed_urls",
        "disable_token_authorization", "enable_model_api", "enable_envvars_config", "max_archive_size", "models",
        "default_worker_isolation", "worker_user", "grpc_inference_address", "grpc_inference_port",
        "grpc_management_address", "grpc_management_port", "enable_grpc_ssl", "certificate_file", "private_key_file",
        "keystore", "keystore_pass", "keystore_type", "cors_allowed_origin", "cors_allowed_methods", "cors_allowed_headers",
        "token_expiration_min", "service_envelope", "kserve_address", "shutdown_grace_period",
        "enable_playground",
        "model_snapshot",
        "convert_torchserve_archives",
    ];

    private static Uri Address(Dictionary<string, string> values, string key, Uri fallback)
    {
        if (!values.TryGetValue(key, out var text)) return fallback;
        if (Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https") return uri;
        throw new FormatException($"config.properties: {key} '{text}' is not an http(s)://host:port address");
    }

    // TorchServe reads the mode without whitespace and case ("Prometheus", " log "). Its "legacy" (the request counters in
    // Prometheus, the rest in the log) is log mode here, where the metrics API always answers.
    private static Metrics.MetricsMode MetricsModeOf(string? text) => text is null ? Metrics.MetricsMode.Log
        : string.Concat(text.Where(c => !char.IsWhiteSpace(c))).ToLowerInvariant() switch
        {
            "log" or "legacy" => Metrics.MetricsMode.Log,
            "prometheus" => Metrics.MetricsMode.Prometheus,
            _ => throw new FormatException($"config.properties: metrics_mode '{text}' is not log or prometheus (TorchServe's modes)"),
        };
    private static string? Envelope(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        var envelope = text.Trim().ToLowerInvariant();
        return ServiceEnvelopes.Contains(envelope) ? envelope
            : throw new FormatException($"config.properties: service_envelope '{text}' is not supported: ServeSharp serves KServe's protocols natively with 'kserve' (v1) or 'kservev2' (OIP v2); TorchServe's 'json' and 'body' envelopes are not implemented");
    }

    private static string? Isolation(string? text)
    {
        try
        {
            return Archive.ModelConfigReader.ParseIsolation(text);
        }
        catch (FormatException e)
        {
            throw new FormatException($"config.properties: default_worker_isolation: {e.Message}");
        }
    }

    private static string[] List(string? text) =>
        string.IsNullOrWhiteSpace(text) ? [] : text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static int? Int(Dictionary<string, string> values, string key) =>
        values.TryGetValue(key, out var s) ? int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
            : throw new FormatException($"config.properties: {key} '{s}' is not an integer") : null;

    private static long? Long(Dictionary<string, string> values, string key) =>
        values.TryGetValue(key, out var s) ? long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
            : throw new FormatException($"config.properties: {key} '{s}' is not an integer") : null;

    private static double? Double(Dictionary<string, string> values, string key) =>
        values.TryGetValue(key, out var s) ? double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v
            : throw new FormatException($"config.properties: {key} '{s}' is not a number") : null;

    private static bool? Bool(Dictionary<string, string> values, string key) =>
        values.TryGetValue(key, out var s) ? s.Equals("true", StringComparison.OrdinalIgnoreCase) ? true
            : s.Equals("false", StringComparison.OrdinalIgnoreCase) ? false
            : throw new FormatException($"config.properties: {key} '{s}' is not true or false") : null;

    private static Dictionary<string, IReadOnlyDictionary<string, ModelSettings>> ParseModels(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var result = new Dictionary<string, IReadOnlyDictionary<string, ModelSettings>>();
            foreach (var model in doc.RootElement.EnumerateObject())
            {
                var versions = new Dictionary<string, ModelSettings>();
                foreach (var version in model.Value.EnumerateObject()) versions[version.Name] = ModelSettings.FromJson(version.Value);
                result[model.Name] = versions;
            }
            return result;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new FormatException($"config.properties: models is not TorchServe's JSON block ({e.Message})", e);
        }
    }
}

/// <summary>What the command line sets over config.properties (TorchServe's --model-store, --disable-token-auth, --enable-model-api).</summary>
internal sealed record CommandLineSettings
{
    public string? ModelStore { get; init; }
    public bool DisableTokenAuthorization { get; init; }
    public bool EnableModelApi { get; init; }
    public string? LogConfig { get; init; }
}

/// <summary>Where one gRPC API listens: a host (IP address or localhost) and a port (0: a free one).</summary>
internal sealed record GrpcListen(string Host, int Port);

/// <summary>Per-model settings from config.properties' <c>models</c> block (TorchServe's key names).</summary>
internal sealed record ModelSettings
{
    public bool? DefaultVersion { get; init; }
    public string? MarName { get; init; }
    public int? MinWorkers { get; init; }
    public int? MaxWorkers { get; init; }
    public int? BatchSize { get; init; }
    public int? MaxBatchDelay { get; init; }
    public int? ResponseTimeout { get; init; }

    public static ModelSettings FromJson(JsonElement e) => new()
    {
        DefaultVersion = e.TryGetProperty("defaultVersion", out var d) ? d.GetBoolean() : null,
        MarName = e.TryGetProperty("marName", out var m) ? m.GetString() : null,
        MinWorkers = e.TryGetProperty("minWorkers", out var min) ? min.GetInt32() : null,
        MaxWorkers = e.TryGetProperty("maxWorkers", out var max) ? max.GetInt32() : null,
        BatchSize = e.TryGetProperty("batchSize", out var b) ? b.GetInt32() : null,
        MaxBatchDelay = e.TryGetProperty("maxBatchDelay", out var delay) ? delay.GetInt32() : null,
        ResponseTimeout = e.TryGetProperty("responseTimeout", out var t) ? t.GetInt32() : null,
    };
}
