using Microsoft.Extensions.Logging;
using ServeSharp.Archive;
using ServeSharp.Loader;
using ServeSharp.Sdk;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Http;

namespace ServeSharp.Server.Wlm;

/// <summary>What a registration asks for (management API parameters, or startup's --models / snapshot).</summary>
public sealed record RegisterRequest
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
/// The registry of models and their versions (TorchServe's ModelManager): register, unregister, describe,
/// set the default version. Every change is written to the config snapshot.
/// </summary>
public sealed partial class ModelManager(ServerConfig config, WorkLoadManager workLoad, ModelSource source, HandlerResolver resolver, SnapshotStore snapshots, ILoggerFactory loggers)
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
        ModelArchive archive;
        try
        {
            archive = await Task.Run(() => ModelArchive.Open(path, source.ExtractionRoot, new ArchiveLimits { MaxTotalBytes = config.MaxArchiveBytes }), cancellationToken);
        }
        catch (ArchiveException e)
        {
            throw new ApiException(400, e.Message);
        }

        Model model;
        try
        {
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
                throw new ApiException(400, e.Message);
            }
            model = new Model(name, version, request.Url, archive, factory, Settings(name, version, archive.Config, request), config.JobQueueSize, request.LoadedAtStartup)
            {
                SnapshotUrl = source.SnapshotName(request.Url, path),
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
                model.Dispose();
                throw new ApiException(409, $"Model version {model.Version} is already registered for model {model.Name}", "ConflictStatusException");
            }
            set.Versions[model.Version] = model;
            if (set.Versions.Count == 1 || request.MakeDefault == true) set.DefaultVersion = model.Version;
        }
        LogRegistered(_logger, model.Name, model.Version, request.Url);

        var workers = model.Settings.MinWorkers;
        if (!request.Synchronous)
        {
            _ = ScaleInBackgroundAsync(model, workers);
            Save();
            return (model, false);
        }

        try
        {
            await workLoad.ScaleAsync(model, workers, cancellationToken);
        }
        catch (Exception e) when (workers > 0 && model.ActiveWorkerCount == 0)
        {
            await RemoveAsync(model);
            throw new ApiException(500, $"Failed to start workers for model {model.Name} version {model.Version}: {e.Message}", "InternalServerException");
        }
        Save();
        return (model, true);
    }

    /// <summary>Sets min/max workers and brings the pool there (TorchServe keeps minWorkers running).</summary>
    public async Task ScaleAsync(Model model, int? minWorkers, int? maxWorkers, bool synchronous, CancellationToken cancellationToken)
    {
        var current = model.Settings;
        var min = minWorkers ?? current.MinWorkers;
        var max = Math.Max(min, maxWorkers ?? Math.Max(current.MaxWorkers, min));
        if (min < 0 || (maxWorkers is { } m && m < min))
            throw new ApiException(400, $"Invalid worker counts: min_worker {min}, max_worker {maxWorkers}");
        model.Settings = current with { MinWorkers = min, MaxWorkers = max };
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
            if (!_models.TryGetValue(name, out var set)) throw ApiException.ModelNotFound(name);
            if (!set.Versions.ContainsKey(version)) throw ApiException.ModelNotFound(name, version);
            set.DefaultVersion = version;
        }
        Save();
    }

    /// <summary>The named version, or the default one; 404 when absent.</summary>
    public Model Get(string name, string? version)
    {
        lock (_gate)
        {
            if (!_models.TryGetValue(name, out var set)) throw ApiException.ModelNotFound(name);
            var v = string.IsNullOrEmpty(version) ? set.DefaultVersion : version;
            return set.Versions.TryGetValue(v, out var model) ? model : throw ApiException.ModelNotFound(name, version);
        }
    }

    public IReadOnlyList<Model> GetAllVersions(string name)
    {
        lock (_gate)
        {
            return _models.TryGetValue(name, out var set) ? [.. set.Versions.Values.OrderBy(m => m.Version, StringComparer.Ordinal)] : throw ApiException.ModelNotFound(name);
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

    public async Task StopAllAsync()
    {
        foreach (var model in AllModels()) await RemoveAsync(model);
    }

    private async Task RemoveAsync(Model model)
    {
        lock (_gate)
        {
            if (_models.TryGetValue(model.Name, out var set) && set.Versions.Remove(model.Version))
            {
                if (set.Versions.Count == 0) _models.Remove(model.Name);
                else if (set.DefaultVersion == model.Version) set.DefaultVersion = set.Versions.Keys.Max(StringComparer.Ordinal)!;
            }
        }
        await workLoad.StopAllAsync(model);
        model.Dispose();
    }

    private async Task ScaleInBackgroundAsync(Model model, int workers)
    {
        try
        {
            await workLoad.ScaleAsync(model, workers, CancellationToken.None);
        }
        catch (Exception e)
        {
            LogScaleFailed(_logger, model.Name, e);
        }
    }

    private WorkerSettings Settings(string name, string version, ModelConfig yaml, RegisterRequest request)
    {
        var block = config.Models.TryGetValue(name, out var versions) && versions.TryGetValue(version, out var s) ? s : null;
        var min = request.InitialWorkers ?? yaml.MinWorkers ?? block?.MinWorkers ?? (request.LoadedAtStartup ? config.DefaultWorkersPerModel : 0);
        var max = request.MaxWorkers ?? yaml.MaxWorkers ?? block?.MaxWorkers ?? min;
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
        };
    }

    private void Save()
    {
        try
        {
            List<SnapshotEntry> entries;
            lock (_gate)
            {
                entries = [.. _models.Values.SelectMany(set => set.Versions.Values.Select(m => new SnapshotEntry(
                    m.Name, m.Version, m.SnapshotUrl, set.DefaultVersion == m.Version, m.Settings)))];
            }
            snapshots.Save(entries);
        }
        catch (IOException e)
        {
            LogSnapshotFailed(_logger, e);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Warning}")]
    private static partial void LogConfigWarning(ILogger logger, string warning);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} version {Version} registered from {Url}")]
    private static partial void LogRegistered(ILogger logger, string model, string version, string url);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} version {Version} unregistered")]
    private static partial void LogUnregistered(ILogger logger, string model, string version);

    [LoggerMessage(Level = LogLevel.Error, Message = "Model {Model}: scaling workers failed")]
    private static partial void LogScaleFailed(ILogger logger, string model, Exception error);

    [LoggerMessage(Level = LogLevel.Error, Message = "Could not write the config snapshot")]
    private static partial void LogSnapshotFailed(ILogger logger, Exception error);
}
