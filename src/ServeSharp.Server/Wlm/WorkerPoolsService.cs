using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ServeSharp.Server.Configuration;

namespace ServeSharp.Server.Wlm;

/// <summary>What the command line adds to config.properties.</summary>
internal sealed record StartOptions
{
    public required ServerConfig Config { get; init; }
    public IReadOnlyList<string> Models { get; init; } = [];
    public bool NoConfigSnapshot { get; init; }
    public string LogDirectory { get; init; } = "logs";

    /// <summary>Where token authorization writes its keys (TorchServe: key_file.json in the working directory).</summary>
    public string? KeyFile { get; init; }
}

/// <summary>
/// The worker pools' place in the host: at start it registers the snapshot's and the command line's models (before
/// the listeners open, so no early request sees a 404; their workers load in the background) and writes the startup
/// snapshot; at stop — after the listeners have let in-flight requests finish — it drains every model.
/// The snapshot restored is the config file's own <c>model_snapshot</c> (a TorchServe snapshot given as --ts-config),
/// else the newest in logs/config unless --ncs. Its models come with the settings it recorded; --models and
/// load_models add the models it does not name.
/// </summary>
internal sealed partial class WorkerPoolsService(StartOptions options, ModelManager models, SnapshotStore snapshots, ILogger<WorkerPoolsService> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var request in StartupRequests())
        {
            try
            {
                await models.RegisterAsync(request, cancellationToken);
            }
            catch (Exception e) when (e is ServeSharpException or IOException)
            {
                // One bad archive costs only its own model, never the server.
                LogModelFailed(logger, request.Url, e.Message);
            }
        }
        models.Save("startup");
    }

    public Task StopAsync(CancellationToken cancellationToken) => models.StopAllAsync();

    private List<RegisterRequest> StartupRequests()
    {
        var requests = new List<RegisterRequest>();
        foreach (var r in Restored())
        {
            requests.Add(new RegisterRequest
            {
                Url = r.MarName, ModelName = r.Name, InitialWorkers = r.MinWorkers, MaxWorkers = r.MaxWorkers, BatchSize = r.BatchSize,
                MaxBatchDelay = r.MaxBatchDelay, ResponseTimeout = r.ResponseTimeout, StartupTimeout = r.StartupTimeout,
                Runtime = r.RuntimeType is "python" or "python3" or "LSP" ? r.RuntimeType : null,
                MakeDefault = r.DefaultVersion, Synchronous = false,
            });
        }

        var wanted = options.Models.Count > 0 ? options.Models : options.Config.LoadModels;
        foreach (var spec in ExpandModels(wanted, options.Config.ModelStore))
        {
            var eq = spec.IndexOf('=');
            var (name, url) = eq > 0 ? (spec[..eq], spec[(eq + 1)..]) : ((string?)null, spec);
            if (name is not null && requests.Any(r => r.ModelName == name)) continue;
            requests.Add(new RegisterRequest { Url = url, ModelName = name, Synchronous = false, LoadedAtStartup = true });
        }
        return requests;
    }

    private IReadOnlyList<RestoredModel> Restored()
    {
        var (from, json) = options.Config.Properties.TryGetValue(SnapshotFile.ModelSnapshotKey, out var given)
            ? ("the config file's model_snapshot", given)
            : snapshots.LoadLatest() is { } latest ? (latest.Path, latest.ModelSnapshot) : (null, null);
        if (json is null) return [];
        try
        {
            var restored = SnapshotFile.ReadModels(json);
            LogRestored(logger, restored.Count, from!);
            return restored;
        }
        catch (JsonException e)
        {
            LogSnapshotUnreadable(logger, from!, e.Message);
            return [];
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

    [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "Restoring {Count} model versions from {Snapshot}")]
    private static partial void LogRestored(ILogger logger, int count, string snapshot);

    [LoggerMessage(EventId = 6003, Level = LogLevel.Error, Message = "The config snapshot {Snapshot} cannot be read ({Error}); no model restored from it")]
    private static partial void LogSnapshotUnreadable(ILogger logger, string snapshot, string error);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Error, Message = "Failed to load model {Url}: {Error}")]
    private static partial void LogModelFailed(ILogger logger, string url, string error);
}
