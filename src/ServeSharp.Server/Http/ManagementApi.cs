using System.Globalization;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Http;

/// <summary>TorchServe's management API: register, scale, describe, list, unregister, set-default.</summary>
internal static class ManagementApi
{
    public static IEnumerable<Route> Routes(ModelManager models, ServerConfig config) =>
    [
        new(Api.Management, "GET", "/models", http => ListAsync(http, models)),
        new(Api.Management, "POST", "/models", http => RegisterAsync(http, models, config)),
        new(Api.Management, "GET", "/models/{model}/{version?}", http => DescribeAsync(http, models, http.RouteString("model")!, http.RouteString("version"))),
        new(Api.Management, "PUT", "/models/{model}/{version?}", http => ScaleAsync(http, models, http.RouteString("model")!, http.RouteString("version"))),
        new(Api.Management, "DELETE", "/models/{model}/{version?}", http => UnregisterAsync(http, models, config, http.RouteString("model")!, http.RouteString("version"))),
        new(Api.Management, "PUT", "/models/{model}/{version}/set-default", http =>
        {
            string model = http.RouteString("model")!, version = http.RouteString("version")!;
            models.SetDefault(model, version);
            return Respond.Status(http, 200, $"Default version successfully updated for model \"{model}\" to \"{version}\"");
        }),
        new(Api.Management, "GET", "/api-description", http => ApiDescription.WriteAsync(http, ApiDescription.Management), Open: true),
        new(Api.Management, "OPTIONS", "/", http => ApiDescription.WriteAsync(http, ApiDescription.Management), Open: true),
    ];

    private static Task ListAsync(HttpContext http, ModelManager models)
    {
        var limit = Int(http, "limit") ?? 100;
        var start = Int(http, "next_page_token") ?? 0;
        if (limit < 1 || start < 0) throw new BadRequestException("limit must be positive and next_page_token non-negative");
        var all = models.ListDefaults();
        var page = all.Skip(start).Take(limit).Select(m => new ModelListEntry(m.Name, m.Url)).ToList();
        var next = start + limit < all.Count ? (start + limit).ToString(CultureInfo.InvariantCulture) : null;
        return Respond.Json(http, 200, new ModelListResponse(page, next), ApiJsonContext.Relaxed.ModelListResponse);
    }

    private static async Task RegisterAsync(HttpContext http, ModelManager models, ServerConfig config)
    {
        RequireModelApi(config);
        var q = http.Request.Query;
        var url = q["url"].ToString();
        if (string.IsNullOrWhiteSpace(url)) throw new BadRequestException("Parameter url is required.");
        var synchronous = Bool(http, "synchronous") ?? false;
        var (model, started) = await models.RegisterAsync(new RegisterRequest
        {
            Url = url,
            ModelName = NonEmpty(q["model_name"].ToString()),
            Handler = NonEmpty(q["handler"].ToString()),
            BatchSize = Int(http, "batch_size"),
            MaxBatchDelay = Int(http, "max_batch_delay"),
            InitialWorkers = Int(http, "initial_workers"),
            ResponseTimeout = Int(http, "response_timeout"),
            Synchronous = synchronous,
        }, http.RequestAborted);

        var workers = model.Settings.MinWorkers;
        if (workers == 0)
            await Respond.Status(http, 200, $"Model \"{model.Name}\" Version: {model.Version} registered with 0 initial workers. Use scale workers API to add workers for the model.");
        else if (!started)
            await Respond.Status(http, 202, "Processing worker updates...");
        else
            await Respond.Status(http, 200, $"Model \"{model.Name}\" Version: {model.Version} registered with {model.LiveWorkerCount} initial workers");
    }

    private static Task DescribeAsync(HttpContext http, ModelManager models, string name, string? version)
    {
        IReadOnlyList<Model> selected = version == "all" ? models.GetAllVersions(name) : [models.Get(name, version)];
        var memory = Environment.WorkingSet;
        var list = selected.Select(m =>
        {
            var s = m.Settings;
            var pending = m.Aggregator.Pending;
            return new ModelDescription(
                m.Name, m.Version, m.Url, m.Archive.Manifest.Runtime ?? "python", m.Factory.Description,
                s.MinWorkers, s.MaxWorkers, s.BatchSize, s.MaxBatchDelayMs, s.ResponseTimeoutSeconds,
                models.IsDefault(m), m.LoadedAtStartup, new QueueStatus(Math.Max(0, m.Aggregator.Capacity - pending), pending),
                [.. m.Workers.Select(w => Describe(w, memory))], StateName(m.State), m.ConsecutiveFailures);
        }).ToList();
        return Respond.Json(http, 200, list, ApiJsonContext.Relaxed.ListModelDescription);
    }

    private static async Task ScaleAsync(HttpContext http, ModelManager models, string name, string? version)
    {
        var model = models.Get(name, version);
        var min = Int(http, "min_worker");
        var max = Int(http, "max_worker");
        _ = Int(http, "timeout"); // workers always finish the batch in hand before stopping; validated for TorchServe parity
        var synchronous = Bool(http, "synchronous") ?? false;
        await models.ScaleAsync(model, min, max, synchronous, http.RequestAborted);
        if (synchronous)
            await Respond.Status(http, 200, $"Workers scaled to {model.LiveWorkerCount} for model: {model.Name}, version: {model.Version}");
        else
            await Respond.Status(http, 202, "Processing worker updates...");
    }

    private static async Task UnregisterAsync(HttpContext http, ModelManager models, ServerConfig config, string name, string? version)
    {
        RequireModelApi(config);
        await models.UnregisterAsync(name, version);
        await Respond.Status(http, 200, $"Model \"{name}\" unregistered");
    }

    private static void RequireModelApi(ServerConfig config)
    {
        if (!config.EnableModelApi)
            throw new MethodNotAllowedException("Model API is disabled: registering and unregistering models needs --enable-model-api or enable_model_api=true");
    }

    private static WorkerDescription Describe(WorkerThread w, long memory)
    {
        return new WorkerDescription(w.Id, w.StartTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture), StatusName(w.State),
            w.ResidentBytes ?? memory, w.ProcessId, w.GpuId is not null, w.GpuId is { } g ? $"gpu {g}" : "N/A", w.DeviceType, w.FallbackReason, w.IntraOpThreads, w.Isolation == WorkerIsolation.Process ? "process" : "in-process",
            w.Restarts, w.LastExitReason, w.FailureReason);
    }

    // TorchServe's names for a worker's state; FAILED is ours (TorchServe shows such a worker as UNLOADING while it retries).
    private static string StatusName(WorkerState s) => s switch
    {
        WorkerState.Ready or WorkerState.Busy => "READY",
        WorkerState.Loading => "LOADING",
        WorkerState.Stopping => "UNLOADING",
        WorkerState.Failed => "FAILED",
        _ => "STOPPED",
    };

    private static string StateName(ModelState s) => s.ToString().ToUpperInvariant();

    private static string? NonEmpty(string s) => string.IsNullOrWhiteSpace(s) ? null : s;

    private static int? Int(HttpContext http, string name)
    {
        var text = http.Request.Query[name].ToString();
        if (text.Length == 0) return null;
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
            : throw new BadRequestException($"Invalid parameter {name}: '{text}' is not an integer");
    }

    private static bool? Bool(HttpContext http, string name)
    {
        var text = http.Request.Query[name].ToString();
        if (text.Length == 0) return null;
        return bool.TryParse(text, out var v) ? v : throw new BadRequestException($"Invalid parameter {name}: '{text}' is not true or false");
    }
}
