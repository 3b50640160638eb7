using System.Globalization;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Http;

/// <summary>
/// What TorchServe's management API does and answers, whatever the protocol: the REST endpoints and the gRPC
/// ManagementAPIsService both parse their own parameters, call these, and write the same text or JSON.
/// </summary>
internal static class ManagementActions
{
    /// <summary>One answer: its HTTP status and TorchServe's status text.</summary>
    public readonly record struct Outcome(int Status, string Message);

    public static ModelListResponse List(ModelManager models, int? limit, int? nextPageToken)
    {
        var size = limit ?? 100;
        var start = nextPageToken ?? 0;
        if (size < 1 || start < 0) throw new BadRequestException("limit must be positive and next_page_token non-negative");
        var all = models.ListDefaults();
        var page = all.Skip(start).Take(size).Select(m => new ModelListEntry(m.Name, m.Url)).ToList();
        var next = start + size < all.Count ? (start + size).ToString(CultureInfo.InvariantCulture) : null;
        return new ModelListResponse(page, next);
    }

    /// <summary>Registration must be allowed and name an archive; checked before anything else is read.</summary>
    public static void RequireRegistration(ServerConfig config, string? url)
    {
        RequireModelApi(config);
        if (string.IsNullOrWhiteSpace(url)) throw new BadRequestException("Parameter url is required.");
    }

    public static async Task<Outcome> RegisterAsync(ModelManager models, RegisterRequest request, CancellationToken cancellationToken)
    {
        var (model, started) = await models.RegisterAsync(request, cancellationToken);
        if (model.Settings.MinWorkers == 0)
            return new(200, $"Model \"{model.Name}\" Version: {model.Version} registered with 0 initial workers. Use scale workers API to add workers for the model.");
        return started
            ? new(200, $"Model \"{model.Name}\" Version: {model.Version} registered with {model.LiveWorkerCount} initial workers")
            : new(202, "Processing worker updates...");
    }

    public static List<ModelDescription> Describe(ModelManager models, string name, string? version)
    {
        IReadOnlyList<Model> selected = version == "all" ? models.GetAllVersions(name) : [models.Get(name, version)];
        var memory = Environment.WorkingSet;
        return [.. selected.Select(m =>
        {
            var s = m.Settings;
            var pending = m.Aggregator.Pending;
            return new ModelDescription(
                m.Name, m.Version, m.Url, m.Archive.Manifest.Runtime ?? "python", m.Factory.Description,
                s.MinWorkers, s.MaxWorkers, s.BatchSize, s.MaxBatchDelayMs, s.ResponseTimeoutSeconds,
                models.IsDefault(m), m.LoadedAtStartup, new QueueStatus(Math.Max(0, m.Aggregator.Capacity - pending), pending),
                [.. m.Workers.Select(w => Describe(w, memory))], StateName(m.State), m.ConsecutiveFailures);
        })];
    }

    public static async Task<Outcome> ScaleAsync(ModelManager models, Model model, int? min, int? max, bool synchronous, CancellationToken cancellationToken)
    {
        await models.ScaleAsync(model, min, max, synchronous, cancellationToken);
        return synchronous
            ? new(200, $"Workers scaled to {model.LiveWorkerCount} for model: {model.Name}, version: {model.Version}")
            : new(202, "Processing worker updates...");
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
}
