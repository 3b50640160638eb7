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

    /// <summary>The management API's <c>runtime</c> (TorchServe's python, python3, LSP): shown by describe, recorded in snapshots.</summary>
    public string? Runtime { get; init; }
    public int? BatchSize { get; init; }
    public int? MaxBatchDelay { get; init; }
    public int? InitialWorkers { get; init; }
    public int? MaxWorkers { get; init; }
    public int? ResponseTimeout { get; init; }

    /// <summary>Seconds a worker has to load; 0 is allowed and, as in TorchServe, no worker can load in it.</summary>
    public int? StartupTimeout { get; init; }
    public bool Synchronous { get; init; } = true;
    public bool LoadedAtStartup { get; init; }
    public bool? MakeDefault { get; init; }
}

/// <summary>
/// The registry of models and their versions (TorchServe's ModelManager): register, unregister, describe, set the
/// default version, and admit predictions into a model's queue. Every change is handed to the snapshot writer.
/// </summary>
internal sealed partial class ModelManager(ServerConfig config, WorkLoadManager workLoad, ModelSource source, HandlerResolver resolver,
    DevicePlanner devices, SnapshotWriter snapshots, ServerMetrics metrics, TimeProvider time, ServerDrain drain, ILoggerFactory loggers,
    RegisterConversion conversion)
{
    private readonly ILogger _logger = loggers.CreateLogger("ServeSharp.ModelManager");
    private readonly object _gate = new();
    private readonly Dictionary<string, VersionSet> _models = new(StringComparer.Ordinal);

    private sealed class VersionSet
    {
        public Dictionary<string, Model> Versions { get; } = new(StringComparer.Ordinal);
        public string DefaultVersion { get; set; } = "";
    }

    /// <summary>
    /// Registers a model version, then (synchronously, when asked) starts its minWorkers. Any worker that fails to load
    /// fails a synchronous registration, which is then undone (TorchServe answers 500 and unregisters). An archive that
    /// registration downloaded is deleted again when the registration fails.
    /// </summary>
    public async Task<(Model Model, bool WorkersStarted)> RegisterAsync(RegisterRequest request, CancellationToken cancellationToken)
    {
        var archiveSource = await source.ResolveAsync(request.Url, cancellationToken);
        try
        {
            return await RegisterAsync(request, archiveSource, cancellationToken);
        }
        catch when (archiveSource.Downloaded)
        {
            DeleteDownloaded(archiveSource.Path);
            throw;
        }
    }

    private async Task<(Model Model, bool WorkersStarted)> RegisterAsync(RegisterRequest request, ArchiveSource archiveSource, CancellationToken cancellationToken)
    {
        var path = archiveSource.Path;
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
            var factory = Resolve(name, archive, request.Handler);
            WorkerSettings settings;
            try
            {
                settings = devices.Plan(name, Settings(name, version, archive.Config, request, builtIn: factory.LoadContext is null), explicitDevice: archive.Config.DeviceType is not null);
                DevicePlanner.CheckPrecision(name, settings, archive.Config.Precision);
            }
            catch
            {
                factory.Dispose();
                throw;
            }
            if (settings.FallbackReason is { } fallback) LogCpuFallback(_logger, name, fallback);
            // A process worker loads its handler in its own process: the server's copy only proved that it loads.
            if (settings.Isolation == WorkerIsolation.Process) factory.Dispose();
            var queueSize = archive.Config.All.GetInt("jobQueueSize") is > 0 and var perModel ? perModel : config.JobQueueSize;
            model = new Model(name, version, request.Url, archive, factory, settings, queueSize,
                request.LoadedAtStartup, metrics, time, loggers.CreateLogger($"ServeSharp.Model.{name}"))
            {
                SnapshotUrl = source.SnapshotName(request.Url, archiveSource),
                DownloadedArchive = archiveSource.Downloaded ? path : null,
                HandlerOverride = request.Handler,
                Runtime = request.Runtime ?? archive.Manifest.Runtime ?? "python",
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
            _ = ScaleInBackgroundAsync(model);
            Save();
            return (model, false);
        }

        var (_, failure) = await workLoad.ScaleAsync(model, cancellationToken);
        if (failure is not null)
        {
            await RemoveAsync(model);
            throw new InternalServerException($"Failed to start workers for model {model.Name} version: {model.Version}: {failure}");
        }
        Save();
        return (model, true);
    }

    // TorchServe does not look at the handler until a worker loads it: an unknown handler registers, and its workers fail.
    private HandlerFactory Resolve(string name, ModelArchive archive, string? handlerOverride)
    {
        try
        {
            return resolver.Resolve(archive, handlerOverride);
        }
        catch (HandlerLoadException e)
        {
            LogHandlerUnresolved(_logger, name, e.Message);
            return HandlerFactory.Unresolved(handlerOverride ?? archive.Model.Handler ?? "", e.Message);
        }
    }

    /// <summary>
    /// /ping: unhealthy when a model has fewer ready workers than its minWorkers, unless they are being restarted and
    /// maxRetryTimeoutInSec has not passed since the first failure (TorchServe's rule: one crashed worker is not an outage).
    /// Never healthy once the server is stopping, so a load balancer sends it nothing new.
    /// </summary>
    public bool IsHealthy() => !Stopping && AllModels().All(m => m.ReadyWorkerCount >= m.Settings.MinWorkers || Recovering(m));

    /// <summary>Whether the server is draining to stop (health checks answer 503 then).</summary>
    public bool Stopping => drain.Draining;

    // A worker that has just failed is listed FAILED a moment before its failure is counted: that is recovery too.
    private bool Recovering(Model m) => m.RecoveringSince is { } since
        ? time.GetElapsedTime(since).TotalSeconds < m.Settings.MaxRetryTimeoutSeconds
        : m.Workers.Any(w => w.State == WorkerState.Failed);

    /// <summary>
    /// Sets min/max workers and brings the pool there (TorchServe keeps minWorkers running). Synchronously, it returns
    /// how many new workers loaded and why the first that did not failed; the caller checked the counts.
    /// </summary>
    public async Task<(int Loaded, string? Failure)> ScaleAsync(Model model, int minWorkers, int maxWorkers, bool synchronous, CancellationToken cancellationToken)
    {
        model.Settings = model.Settings with { MinWorkers = minWorkers, MaxWorkers = maxWorkers };
        if (minWorkers == 0) model.TryMove(ModelState.Ready, ModelState.Loading, ModelState.Failed);
        Save();
        if (synchronous) return await workLoad.ScaleAsync(model, cancellationToken);
        _ = ScaleInBackgroundAsync(model);
        return (0, null);
    }

    /// <summary>
    /// Unregisters a version (the default one when none is named). The default version cannot go while other versions
    /// are registered: TorchServe's 403, set another default first. An archive that registration downloaded from a
    /// URL is deleted from the model store; one the user put there stays.
    /// </summary>
    public async Task UnregisterAsync(string name, string? version)
    {
        Model model;
        lock (_gate)
        {
            if (!_models.TryGetValue(name, out var set)) throw ModelNotFoundException.For(name);
            var v = string.IsNullOrEmpty(version) ? set.DefaultVersion : version;
            if (!set.Versions.TryGetValue(v, out var found)) throw ModelNotFoundException.For(name, version);
            if (v == set.DefaultVersion && set.Versions.Count > 1) throw new InvalidModelVersionException($"Cannot remove default version for model {name}");
            model = found;
            Detach(model);
        }
        await DrainAsync(model);
        if (model.DownloadedArchive is { } downloaded) DeleteDownloaded(downloaded);
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

    /// <summary>
    /// TorchServe's customized describe: a job of its own (never batched with predictions) whose request carries the
    /// header <c>describe: True</c>; the handler answers its metadata (BaseHandler.Describe). Needs a worker, as in TorchServe.
    /// </summary>
    public async Task<JobResult> DescribeHandlerAsync(Model model, CancellationToken cancellationToken)
    {
        if (model.State is ModelState.Draining or ModelState.Unloaded || model.LiveWorkerCount == 0)
            throw new ServiceUnavailableException($"Model \"{model.Name}\" has no worker to serve describe request. Please use scale workers API to add workers.");
        var request = new InferenceRequest(Guid.NewGuid().ToString("N"), new Dictionary<string, RequestParameter>(),
            new Dictionary<string, string> { [InferenceRequest.DescribeHeader] = "True" });
        using var job = new Job(request, InferenceProtocol.TorchServeRest, time.GetTimestamp(), cancellationToken) { IsDescribe = true };
        if (!model.Aggregator.TryAdmit(job))
            throw new ServiceUnavailableException($"Model \"{model.Name}\" version {model.Version}: the job queue is full ({model.Aggregator.Capacity} waiting); retry later", retrySoon: true);
        return await job.Completion;
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
    /// queue (or, once every client of its batch has gone, the running batch is cancelled). <paramref name="requestedVersion"/>
    /// is the version the request named (null: none), which the request metrics print as TorchServe does.
    /// </summary>
    public async Task<JobResult> PredictAsync(Model model, string? requestedVersion, InferenceRequest request, InferenceProtocol protocol, CancellationToken cancellationToken)
    {
        // TorchServe counts a prediction when it arrives for a known model, before it is queued; its model_version
        // label is the version the request named, or "default".
        var versionLabel = string.IsNullOrEmpty(requestedVersion) ? "default" : requestedVersion;
        metrics.InferenceReceived(model.Name, versionLabel, protocol);
        EnsureServing(model);
        using var job = new Job(request, protocol, time.GetTimestamp(), cancellationToken) { VersionLabel = versionLabel };
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

    /// <summary>Server stop: TorchServe's shutdown snapshot, then every model drains (a restart restores them).</summary>
    public Task StopAllAsync()
    {
        Save("shutdown");
        return Task.WhenAll(AllModels().Select(RemoveAsync));
    }

    // Leaves the registry first (a new registration of the same version may start at once), then drains.
    private async Task RemoveAsync(Model model)
    {
        lock (_gate) Detach(model);
        await DrainAsync(model);
    }

    // Under _gate. The default moves only when a registration that failed or the server's stop removes it.
    private void Detach(Model model)
    {
        if (_models.TryGetValue(model.Name, out var set) && set.Versions.TryGetValue(model.Version, out var listed) && listed == model)
        {
            set.Versions.Remove(model.Version);
            if (set.Versions.Count == 0) _models.Remove(model.Name);
            else if (set.DefaultVersion == model.Version) set.DefaultVersion = set.Versions.Keys.Max(StringComparer.Ordinal)!;
        }
    }

    private async Task DrainAsync(Model model)
    {
        await workLoad.DrainAsync(model, TimeSpan.FromSeconds(model.Settings.ResponseTimeoutSeconds));
        model.Dispose();
    }

    private void DeleteDownloaded(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogDeleteFailed(_logger, path, e.Message);
        }
    }

    private async Task ScaleInBackgroundAsync(Model model)
    {
        try
        {
            await workLoad.ScaleAsync(model, model.Lifetime);
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
        // TorchServe's management API registers with default_workers_per_model when config.properties sets it, else 0.
        var apiDefault = config.Properties.ContainsKey("default_workers_per_model") ? config.DefaultWorkersPerModel : 0;
        var min = request.InitialWorkers ?? yaml.MinWorkers ?? block?.MinWorkers ?? (request.LoadedAtStartup ? config.DefaultWorkersPerModel : apiDefault);
        var max = request.MaxWorkers ?? yaml.MaxWorkers ?? block?.MaxWorkers ?? min;
        if (min < 0) throw new BadRequestException($"Invalid worker count: initial_workers {min}");
        return new WorkerSettings
        {
            MinWorkers = min,
            MaxWorkers = Math.Max(min, max),
            BatchSize = Math.Max(1, request.BatchSize ?? yaml.BatchSize ?? block?.BatchSize ?? config.DefaultBatchSize),
            MaxBatchDelayMs = Math.Max(0, request.MaxBatchDelay ?? yaml.MaxBatchDelay ?? block?.MaxBatchDelay ?? config.DefaultMaxBatchDelay),
            ResponseTimeoutSeconds = Math.Max(1, request.ResponseTimeout ?? yaml.ResponseTimeout ?? block?.ResponseTimeout ?? config.DefaultResponseTimeout),
            StartupTimeoutSeconds = Math.Max(0, request.StartupTimeout ?? yaml.StartupTimeout ?? config.DefaultStartupTimeout),
            DeviceType = yaml.DeviceType ?? (config.NumberOfGpu > 0 ? "gpu" : "cpu"),
            DeviceIds = yaml.DeviceIds ?? [],
            Isolation = (yaml.WorkerIsolation ?? config.DefaultWorkerIsolation ?? (builtIn ? "in-process" : "process")) == "process"
                ? WorkerIsolation.Process : WorkerIsolation.InProcess,
            MaxWorkerMemoryMB = yaml.MaxWorkerMemoryMB,
            SharedSession = yaml.SharedSession,
            MaxRetryTimeoutSeconds = Math.Max(0, yaml.All.GetInt("maxRetryTimeoutInSec") ?? 300),
        };
    }

    /// <summary>Asks for a config snapshot of every model version ("snapshot" after a change; "startup", "shutdown").</summary>
    public void Save(string kind = "snapshot")
    {
        List<SnapshotEntry> entries;
        lock (_gate)
        {
            entries = [.. _models.Values.SelectMany(set => set.Versions.Values.Select(m => new SnapshotEntry(
                m.Name, m.Version, m.SnapshotUrl, set.DefaultVersion == m.Version, m.Settings, m.Runtime)))];
        }
        snapshots.Request(entries, kind);
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "{Warning}")]
    private static partial void LogConfigWarning(ILogger logger, string warning);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "Model {Model} version {Version} registered from {Url}")]
    private static partial void LogRegistered(ILogger logger, string model, string version, string url);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Information, Message = "Model {Model} version {Version} unregistered")]
    private static partial void LogUnregistered(ILogger logger, string model, string version);

    [LoggerMessage(EventId = 4005, Level = LogLevel.Warning, Message = "Model {Model} runs on CPU: {Reason}")]
    private static partial void LogCpuFallback(ILogger logger, string model, string reason);

    [LoggerMessage(EventId = 4006, Level = LogLevel.Warning, Message = "Model {Model}: its handler cannot be loaded, so its workers will fail: {Reason}")]
    private static partial void LogHandlerUnresolved(ILogger logger, string model, string reason);

    [LoggerMessage(EventId = 4007, Level = LogLevel.Warning, Message = "Could not delete the downloaded archive {Path}: {Reason}")]
    private static partial void LogDeleteFailed(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Error, Message = "Model {Model}: scaling workers failed")]
    private static partial void LogScaleFailed(ILogger logger, string model, Exception error);
}
