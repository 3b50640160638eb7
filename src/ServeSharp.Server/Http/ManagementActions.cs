using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Http;

/// <summary>
/// What TorchServe's management API does and answers, whatever the protocol (ManagementRequestHandler and ApiUtils):
/// the REST endpoints and the gRPC ManagementAPIsService read their parameters their own way, call these, and write
/// the same text or JSON. Values TorchServe falls back from (negative counts, a negative page) fall back here too,
/// with a warning in the log.
/// </summary>
internal static class ManagementActions
{
    /// <summary>One answer: its HTTP status and TorchServe's status text.</summary>
    public readonly record struct Outcome(int Status, string Message);

    /// <summary>A registration's parameters as read from the request: null when absent (or, for numbers, unreadable).</summary>
    public sealed record RegisterParameters
    {
        public string? Url { get; init; }
        public string? ModelName { get; init; }
        public string? Runtime { get; init; }
        public string? Handler { get; init; }
        public int? BatchSize { get; init; }
        public int? MaxBatchDelay { get; init; }
        public int? InitialWorkers { get; init; }
        public int? ResponseTimeout { get; init; }
        public int? StartupTimeout { get; init; }
        public bool Synchronous { get; init; }
    }

    // TorchServe's Manifest.RuntimeType values.
    private static readonly string[] Runtimes = ["python", "python3", "LSP"];

    /// <summary>TorchServe's paging (ApiUtils.getModelList): limit outside 0..100 is 100, a negative token is 0.</summary>
    public static ModelListResponse List(ModelManager models, int? limit, int? nextPageToken, ILogger logger)
    {
        var size = limit ?? 100;
        if (size is < 0 or > 100)
        {
            ManagementLog.OutOfRange(logger, "limit", size, "using 100");
            size = 100;
        }
        var start = nextPageToken ?? 0;
        if (start < 0)
        {
            ManagementLog.OutOfRange(logger, "next_page_token", start, "starting from 0");
            start = 0;
        }
        var all = models.ListDefaults();
        var last = start + size;
        string? next = null;
        if (last > all.Count) last = all.Count;
        else next = last.ToString(CultureInfo.InvariantCulture);
        var page = new List<ModelListEntry>();
        for (var i = start; i < last; i++) page.Add(new ModelListEntry(all[i].Name, all[i].Url));
        return new ModelListResponse(page, next);
    }

    public static async Task<Outcome> RegisterAsync(ModelManager models, ServerConfig config, RegisterParameters p, ILogger logger, CancellationToken cancellationToken)
    {
        RequireModelApi(config);
        if (p.Url is null) throw new BadRequestException("Parameter url is required.");
        if (p.Runtime is { } runtime && !Runtimes.Contains(runtime, StringComparer.Ordinal))
            throw new BadRequestException($"Invalid RuntimeType value: {runtime}");
        var (model, started) = await models.RegisterAsync(new RegisterRequest
        {
            Url = p.Url,
            ModelName = NonEmpty(p.ModelName),
            Handler = NonEmpty(p.Handler),
            Runtime = p.Runtime,
            BatchSize = AtLeast(1, p.BatchSize, "batch_size", logger),
            MaxBatchDelay = AtLeast(0, p.MaxBatchDelay, "max_batch_delay", logger),
            InitialWorkers = AtLeast(0, p.InitialWorkers, "initial_workers", logger),
            ResponseTimeout = AtLeast(1, p.ResponseTimeout, "response_timeout", logger),
            StartupTimeout = AtLeast(0, p.StartupTimeout, "startup_timeout", logger),
            Synchronous = p.Synchronous,
        }, cancellationToken);
        var workers = model.Settings.MinWorkers;
        if (workers == 0)
            return new(200, $"Model \"{model.Name}\" Version: {model.Version} registered with 0 initial workers. Use scale workers API to add workers for the model.");
        return started
            ? new(200, $"Model \"{model.Name}\" Version: {model.Version} registered with {workers} initial workers")
            : new(202, "Processing worker updates...");
    }

    /// <summary>
    /// Describe; with <paramref name="customized"/> (and a version that is not "all") the handler's describe hook runs
    /// on a worker and its answer is added as <c>customizedMetadata</c> (TorchServe's DESCRIBE job).
    /// </summary>
    public static async Task<List<ModelDescription>> DescribeAsync(ModelManager models, string name, string? version, bool customized, ILogger logger, CancellationToken cancellationToken)
    {
        if (version == "all") return [.. models.GetAllVersions(name).Select(m => ModelDescriptions.For(models, m, null))];
        var model = models.Get(name, version);
        if (!customized) return [ModelDescriptions.For(models, model, null)];

        var result = await models.DescribeHandlerAsync(model, cancellationToken);
        if (result.StatusCode >= 400) throw PredictionFailedException.From(result);
        JsonObject? metadata = null;
        if (!result.Body.IsEmpty)
        {
            try
            {
                metadata = JsonNode.Parse(result.Body.Span) as JsonObject;
            }
            catch (JsonException)
            {
            }
            if (metadata is null)
            {
                ManagementLog.MetadataNotAnObject(logger, model.Name);
                metadata = [];
            }
        }
        return [ModelDescriptions.For(models, model, metadata)];
    }

    /// <summary>
    /// TorchServe's scale (ApiUtils.updateModelWorkers): max below min is a 400, before the model is looked up; a
    /// negative min is TorchServe's 500. Synchronously, a worker that fails to load makes it a 500.
    /// </summary>
    public static async Task<Outcome> ScaleAsync(ModelManager models, string name, string? version, int min, int max, bool synchronous, CancellationToken cancellationToken)
    {
        if (max < min) throw new BadRequestException("max_worker cannot be less than min_worker.");
        var model = models.Get(name, version);
        if (min < 0) throw new InternalServerException($"min_worker must not be negative: {min}");
        var (_, failure) = await models.ScaleAsync(model, min, max, synchronous, cancellationToken);
        if (!synchronous) return new(202, "Processing worker updates...");
        if (failure is not null) throw new InternalServerException($"Failed to start workers for model {model.Name} version: {model.Version}: {failure}");
        return new(200, $"Workers scaled to {min} for model: {name}" + (version is null ? "" : $", version: {version}"));
    }

    public static async Task<string> UnregisterAsync(ModelManager models, ServerConfig config, string name, string? version)
    {
        RequireModelApi(config);
        await models.UnregisterAsync(name, version);
        return $"Model \"{name}\" unregistered";
    }

    public static string SetDefault(ModelManager models, string name, string version)
    {
        models.SetDefault(name, version);
        return $"Default version successfully updated for model \"{name}\" to \"{version}\"";
    }

    public static void RequireModelApi(ServerConfig config)
    {
        if (!config.EnableModelApi)
            throw new MethodNotAllowedException("Model API is disabled: registering and unregistering models needs --enable-model-api or enable_model_api=true");
    }

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s;

    // A number TorchServe would take but that means nothing here (a negative batch size, -1 workers) is dropped, so the
    // archive's model-config.yaml or the server's default applies, as when it is absent.
    private static int? AtLeast(int least, int? value, string name, ILogger logger)
    {
        if (value is not { } v || v >= least) return value;
        ManagementLog.OutOfRange(logger, name, v, "using the model's or the server's default");
        return null;
    }
}
