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
/// the listeners open, so no early request sees a 404; their workers load in the background); at stop — after the
/// listeners have let in-flight requests finish — it drains every model.
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
    }

    public Task StopAsync(CancellationToken cancellationToken) => models.StopAllAsync();

    private List<RegisterRequest> StartupRequests()
    {
        var requests = new List<RegisterRequest>();
        var restored = options.NoConfigSnapshot ? [] : snapshots.LoadLatest();
        foreach (var (name, _, s) in restored)
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
        return requests;
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

    [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "Restoring {Count} model versions from the last config snapshot")]
    private static partial void LogRestored(ILogger logger, int count);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Error, Message = "Failed to load model {Url}: {Error}")]
    private static partial void LogModelFailed(ILogger logger, string url, string error);
}
