using Microsoft.Extensions.Logging;
using ServeSharp.Archive;
using ServeSharp.Loader;
using ServeSharp.Sdk;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Conversion;
using ServeSharp.Server.Metrics;

namespace ServeSharp.Server.Wlm;

/// <summary>What a registration asks for (management API parameters, or startup's --models / snapshot).</summary>
internal sealed record RegisterRequest
{
    public required string Url { get; init; }
    public string? ModelName { get; init; }
    public string? Handler { get; init; }
    public int? BatchSize { get; init; }
    public int? MaxBatchDelay { get; init; }
    public int? InitialWorkers { get; init; }
    public int? MaxWorkers { get; init; }
    public int? ResponseTimeout { get; init; }
    public bool Synchronous { get; init; } = true;
    public bool LoadedAtStartup { get; init; }
    public bool? MakeDefault { get; init; }
}

/// <summary>
/// The registry of models and their versions (TorchServe's ModelManager): register, unregister, describe, set the
/// default version, and admit predictions into a model's queue. Every change is handed to the snapshot writer.
/// </summary>
internal sealed partial class ModelManager(ServerConfig config, WorkLoadManager workLoad, ModelSource source, HandlerResolver resolver,
    DevicePlanner devices, SnapshotWriter snapshots, ServerMetrics metrics, TimeProvider time, ILoggerFactory loggers, RegisterConversion conversion)
{
    private readonly ILogger _logger = loggers.CreateLogger("ServeSharp.ModelManager");
    private readonly object _gate = new();
    private readonly Dictionary<string, VersionSet> _models = new(StringComparer.Ordinal);

    private sealed class VersionSet
    {
        public Dictionary<string, Model> Versions { get; } = new(StringComparer.Ordinal);
        public string DefaultVersion { get; set; } = "";
    }

    public async Task<(Model Model, bool WorkersStarted)> RegisterAsync(RegisterRequest request, CancellationToken cancellationToken)
    {
        var path = await source.ResolveAsync(request.Url, cancellationToken);
        ModelArchive Open(string file) => ModelArchive.Open(file, source.ExtractionRoot, new ArchiveLimits { MaxTotalBytes = config.MaxArchiveBytes });
        ModelArchive archive;
        try
        {
            archive = await Task.Run(() => Open(path), cancellationToken);
        }
        catch (ArchiveException e)
        {
            throw new BadRequestException(e.Message, inner: e);
        }

        Model model;
        try
        {
            // A TorchServe archive of a PyTorch model: refused with the convert command, or converted (once) and opened.
            archive = await conversion.PrepareAsync(archive, path, Open, cancellationToken);
            foreach (var warning in archive.Config.Warnings) LogConfigWarning(_logger, warning);
            var name = request.ModelName ?? archive.ModelName;
            var version = archive.ModelVersion;
            HandlerFactory factory;
            try
            {
                factory = resolver.Resolve(archive, request.Handler);
            }
            catch (HandlerLoadException e)
            {
                throw new BadRequestException(e.Message, inner: e);
            }
            WorkerSettings settings;
            try
            {
                settings = devices.Plan(name, Settings(name, version, archive.Config, request, builtIn: factory.LoadContext is null), explicitDevice: archive.Config.DeviceType is not null);
            }
            catch
            {
                factory.Dispose();
                throw;
            }
            if (settings.FallbackReason is { } fallback) LogCpuFallback(_logger, name, fallback);
            // A process worker loads its handler in its own process: the server's copy only proved that it loads.
            if (settings.Isolation == WorkerIsolation.Process) factory.Dispose();
            model = new Model(name, version, request.Url, archive, factory, settings, config.JobQueueSize,
                request.LoadedAtStartup, metrics, time, loggers.CreateLogger($"ServeSharp.Model.{name}"))
            {
                SnapshotUrl = ModelSource.SnapshotName(request.Url, path),
                HandlerOverride = request.Handler,
            };
        }
        catch
        {
            archive.Dispose();
            throw;
        }

        lock (_gate)
        {
            var set = _models.TryGetValue(model.Name, out var existing) ? existing : _models[model.Name] = new VersionSet();
            if (set.Versions.ContainsKey(model.Version))
            {
                if (set.Versions.Count == 0) _models.Remove(model.Name);
                model.Dispose();
                throw new ConflictStatusException($"Model version {model.Version} is already registered for model {model.Name}");
            }
            set.Versions[model.Version] = model;
            if (set.Versions.Count == 1 || request.MakeDefault == true) set.DefaultVersion = model.Version;
        }
        workLoad.Add(model);
        LogRegistered(_logger, model.Name, model.Version, request.Url);

        var workers = model.Settings.MinWorkers;
        if (workers == 0) model.TryMove(ModelState.Loading, ModelState.Ready);
        if (!request.Synchronous)
        {
            _ = ScaleInBackgroundAsync(model, workers);
            Save();
            return (model, false);
        }

        var (loaded, failure) = await workLoad.ScaleAsync(model, workers, cancellationToken);
        if (workers > 0 && loaded == 0)
        {
            var reason = failure ?? "no worker loaded";
            await RemoveAsync(model);
            throw new InternalServerException($"Failed to start workers for model {model.Name} version {model.Version}: {reason}");
        }
        Save();
        return (model, true);
    }

    /// <summary>
    /// /ping: unhealthy when a model has fewer ready workers than its minWorkers, unless they are being restarted and
    /// maxRetryTimeoutInSec has not passed since the first failure (TorchServe's rule: one crashed worker is not an outage).
    /// </summary>
    public bool IsHealthy() => AllModels().All(m => m.ReadyWorkerCount >= m.Settings.MinWorkers || Recovering(m));

    // A worker that has just failed is listed FAILED a moment before its failure is counted: that is recovery too.
    private bool Recovering(Model m) => m.RecoveringSince is { } since
        ? time.GetElapsedTime(since).TotalSeconds < m.Settings.MaxRetryTimeoutSeconds
        : m.Workers.Any(w => w.State == WorkerState.Failed);

    /// <summary>Sets min/max workers and brings the pool there (TorchServe keeps minWorkers running).</summary>
    public async Task ScaleAsync(Model model, int? minWorkers, int? maxWorkers, bool synchronous, CancellationToken cancellationToken)
    {
        var current = model.Settings;
        var min = minWorkers ?? current.MinWorkers;
        var max = Math.Max(min, maxWorkers ?? Math.Max(current.MaxWorkers, min));
        if (min < 0 || (maxWorkers is { } m && m < min))
            throw new BadRequestException($"Invalid worker counts: min_worker {min}, max_worker {maxWorkers}");
        model.Settings = current with { MinWorkers = min, MaxWorkers = max };
        if (min == 0) model.TryMove(ModelState.Ready, ModelState.Loading, ModelState.Failed);
        Save();
        if (synchronous) await workLoad.ScaleAsync(model, min, cancellationToken);
        else _ = ScaleInBackgroundAsync(model, min);
    }

    public async Task UnregisterAsync(string name, string? version)
    {
        var model = Get(name, version);
        await RemoveAsync(model);
        LogUnregistered(_logger, model.Name, model.Version);
        Save();
    }

    public void SetDefault(string name, string version)
    {
        lock (_gate)
        {
            if (!_models.TryGetValue(name, out var set)) throw ModelNotFoundException.For(name);
            if (!set.Versions.ContainsKey(version)) throw ModelNotFoundException.For(name, version);
            set.DefaultVersion = version;
        }
        Save();
    }

    /// <summary>Refuses at once when the model cannot take a job (so the endpoint need not read the body).</summary>
    public static void EnsureServing(Model model)
    {
        if (model.State is ModelState.Draining or ModelState.Unloaded)
            throw new ServiceUnavailableException($"Model \"{model.Name}\" version {model.Version} is being unregistered");
        if (model.LiveWorkerCount == 0)
            throw new ServiceUnavailableException($"Model \"{model.Name}\" has no worker to serve inference request. Please use scale workers API to add workers.");
    }

    /// <summary>
    /// Queues one prediction and waits for its answer. The token is the client's: when it fires, the job leaves the
    /// queue (or, once every client of its batch has gone, the running batch is cancelled).
    /// </summary>
    public async Task<JobResult> PredictAsync(Model model, InferenceRequest request, InferenceProtocol protocol, CancellationToken cancellationToken)
    {
        EnsureServing(model);
        using var job = new Job(request, protocol, time.GetTimestamp(), cancellationToken);
        if (!model.Aggregator.TryAdmit(job))
        {
            if (model.State is ModelState.Draining or ModelState.Unloaded) EnsureServing(model);
            throw new ServiceUnavailableException($"Model \"{model.Name}\" version {model.Version}: the job queue is full ({model.Aggregator.Capacity} waiting); retry later", retrySoon: true);
        }
        return await job.Completion;
    }

    /// <summary>The named version, or the default one.</summary>
    public Model Get(string name, string? version)
    {
        lock (_gate)
        {
            if (!_models.TryGetValue(name, out var set)) throw ModelNotFoundException.For(name);
            var v = string.IsNullOrEmpty(version) ? set.DefaultVersion : version;
            return set.Versions.TryGetValue(v, out var model) ? model : throw ModelNotFoundException.For(name, version);
        }
    }

    public IReadOnlyList<Model> GetAllVersions(string name)
    {
        lock (_gate)
        {
            return _models.TryGetValue(name, out var set) ? [.. set.Versions.Values.OrderBy(m => m.Version, StringComparer.Ordinal)] : throw ModelNotFoundException.For(name);
        }
    }

    public bool IsDefault(Model model)
    {
        lock (_gate) return _models.TryGetValue(model.Name, out var set) && set.DefaultVersion == model.Version;
    }

    /// <summary>Every model's default version, by name.</summary>
    public IReadOnlyList<Model> ListDefaults()
    {
        lock (_gate)
        {
            return [.. _models.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Value.Versions[kv.Value.DefaultVersion])];
        }
    }

    public IReadOnlyList<Model> AllModels()
    {
        lock (_gate) return [.. _models.Values.SelectMany(s => s.Versions.Values)];
    }

    /// <summary>Server stop: every model drains (the snapshot is not touched, so a restart restores them).</summary>
    public Task StopAllAsync() => Task.WhenAll(AllModels().Select(RemoveAsync));

    // Leaves the registry first (a new registration of the same version may start at once), then drains.
    private async Task RemoveAsync(Model model)
    {
        lock (_gate)
        {
            if (_models.TryGetValue(model.Name, out var set) && set.Versions.TryGetValue(model.Version, out var listed) && listed == model)
            {
                set.Versions.Remove(model.Version);
                if (set.Versions.Count == 0) _models.Remove(model.Name);
                else if (set.DefaultVersion == model.Version) set.DefaultVersion = set.Versions.Keys.Max(StringComparer.Ordinal)!;
            }
        }
        await workLoad.DrainAsync(model, TimeSpan.FromSeconds(model.Settings.ResponseTimeoutSeconds));
        model.Dispose();
    }

    private async Task ScaleInBackgroundAsync(Model model, int workers)
    {
        try
        {
            await workLoad.ScaleAsync(model, workers, model.Lifetime);
        }
        catch (OperationCanceledException) when (model.Lifetime.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            LogScaleFailed(_logger, model.Name, e);
        }
    }

    private WorkerSettings Settings(string name, string version, ModelConfig yaml, RegisterRequest request, bool builtIn)
    {
        var block = config.Models.TryGetValue(name, out var versions) && versions.TryGetValue(version, out var s) ? s : null;
        var min = request.InitialWorkers ?? yaml.MinWorkers ?? block?.MinWorkers ?? (request.LoadedAtStartup ? config.DefaultWorkersPerModel : 0);
        var max = request.MaxWorkers ?? yaml.MaxWorkers ?? block?.MaxWorkers ?? min;
        if (min < 0) throw new BadRequestException($"Invalid worker count: initial_workers {min}");
        return new WorkerSettings
        {
            MinWorkers = min,
            MaxWorkers = Math.Max(min, max),
            BatchSize = Math.Max(1, request.BatchSize ?? yaml.BatchSize ?? block?.BatchSize ?? config.DefaultBatchSize),
            MaxBatchDelayMs = Math.Max(0, request.MaxBatchDelay ?? yaml.MaxBatchDelay ?? block?.MaxBatchDelay ?? config.DefaultMaxBatchDelay),
            ResponseTimeoutSeconds = Math.Max(1, request.ResponseTimeout ?? yaml.ResponseTimeout ?? block?.ResponseTimeout ?? config.DefaultResponseTimeout),
            StartupTimeoutSeconds = Math.Max(1, yaml.StartupTimeout ?? config.DefaultStartupTimeout),
            DeviceType = yaml.DeviceType ?? (config.NumberOfGpu > 0 ? "gpu" : "cpu"),
            DeviceIds = yaml.DeviceIds ?? [],
            Isolation = (yaml.WorkerIsolation ?? config.DefaultWorkerIsolation ?? (builtIn ? "in-process" : "process")) == "process"
                ? WorkerIsolation.Process : WorkerIsolation.InProcess,
            MaxWorkerMemoryMB = yaml.MaxWorkerMemoryMB,
            MaxRetryTimeoutSeconds = Math.Max(0, yaml.All.GetInt("maxRetryTimeoutInSec") ?? 300),
        };
    }

    private void Save()
    {
        List<SnapshotEntry> entries;
        lock (_gate)
        {
            entries = [.. _models.Values.SelectMany(set => set.Versions.Values.Select(m => new SnapshotEntry(
                m.Name, m.Version, m.SnapshotUrl, set.DefaultVersion == m.Version, m.Settings)))];
        }
        snapshots.Request(entries);
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "{Warning}")]
    private static partial void LogConfigWarning(ILogger logger, string warning);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "Model {Model} version {Version} registered from {Url}")]
    private static partial void LogRegistered(ILogger logger, string model, string version, string url);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Information, Message = "Model {Model} version {Version} unregistered")]
    private static partial void LogUnregistered(ILogger logger, string model, string version);

    [LoggerMessage(EventId = 4005, Level = LogLevel.Warning, Message = "Model {Model} runs on CPU: {Reason}")]
    private static partial void LogCpuFallback(ILogger logger, string model, string reason);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Error, Message = "Model {Model}: scaling workers failed")]
    private static partial void LogScaleFailed(ILogger logger, string model, Exception error);
}
