using System.Globalization;
using System.Text.Json;
using ServeSharp.Server.Configuration;

namespace ServeSharp.Server.Wlm;

/// <summary>One model version as the snapshot remembers it.</summary>
internal sealed record SnapshotEntry(string Name, string Version, string Url, bool IsDefault, WorkerSettings Settings);

/// <summary>
/// TorchServe's config snapshots: after every change, <c>logs/config/{timestamp}-snapshot.cfg</c> holds a
/// <c>model_snapshot=</c> JSON of the registered models; the next start restores the newest one unless --ncs.
/// </summary>
internal sealed class SnapshotStore(string directory, bool enabled)
{
    private readonly object _gate = new();
    private const int Keep = 10;

    public string Directory { get; } = directory;

    public void Save(IReadOnlyList<SnapshotEntry> entries)
    {
        if (!enabled) return;
        var models = new Dictionary<string, Dictionary<string, object>>();
        foreach (var e in entries)
        {
            if (!models.TryGetValue(e.Name, out var versions)) models[e.Name] = versions = [];
            versions[e.Version] = new Dictionary<string, object>
            {
                ["defaultVersion"] = e.IsDefault,
                ["marName"] = e.Url,
                ["minWorkers"] = e.Settings.MinWorkers,
                ["maxWorkers"] = e.Settings.MaxWorkers,
                ["batchSize"] = e.Settings.BatchSize,
                ["maxBatchDelay"] = e.Settings.MaxBatchDelayMs,
                ["responseTimeout"] = e.Settings.ResponseTimeoutSeconds,
            };
        }
        var snapshot = new Dictionary<string, object>
        {
            ["name"] = "snapshot",
            ["modelCount"] = entries.Count,
            ["created"] = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            ["models"] = models,
        };

        lock (_gate)
        {
            System.IO.Directory.CreateDirectory(Directory);
            var stamp = DateTime.UtcNow.ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture);
            var path = Path.Combine(Directory, $"{stamp}-snapshot.cfg");
            var temp = path + ".tmp";
            File.WriteAllText(temp, "# Written by ServeSharp on every model change; restored at start unless --ncs.\nmodel_snapshot=" + JsonSerializer.Serialize(snapshot) + "\n");
            File.Move(temp, path, overwrite: true);
            foreach (var old in Snapshots().Skip(Keep)) File.Delete(old);
        }
    }

    /// <summary>The newest snapshot's models, or none.</summary>
    public IReadOnlyList<(string Name, string Version, ModelSettings Settings)> LoadLatest()
    {
        var latest = Snapshots().FirstOrDefault();
        if (latest is null) return [];
        var properties = PropertiesFile.Parse(File.ReadAllText(latest));
        if (!properties.TryGetValue("model_snapshot", out var json)) return [];
        using var doc = JsonDocument.Parse(json);
        var result = new List<(string, string, ModelSettings)>();
        foreach (var model in doc.RootElement.GetProperty("models").EnumerateObject())
        {
            foreach (var version in model.Value.EnumerateObject()) result.Add((model.Name, version.Name, ModelSettings.FromJson(version.Value)));
        }
        return result;
    }

    private IEnumerable<string> Snapshots() =>
        System.IO.Directory.Exists(Directory)
            ? System.IO.Directory.GetFiles(Directory, "*-snapshot.cfg").OrderByDescending(Path.GetFileName, StringComparer.Ordinal)
            : [];
}
