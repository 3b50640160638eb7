using System.Globalization;
using System.Text.RegularExpressions;
using ServeSharp.Server.Configuration;

namespace ServeSharp.Server.Wlm;

/// <summary>
/// TorchServe's config snapshots in <c>logs/config/</c>: <c>{yyyyMMddHHmmssSSS}-startup.cfg</c> after start,
/// <c>-snapshot.cfg</c> after every model change, <c>-shutdown.cfg</c> at stop, each in TorchServe's format
/// (<see cref="SnapshotFile"/>); the next start restores the newest one, whatever its kind. --ncs turns writing and
/// restoring off, as TorchServe's --no-config-snapshots does. Only the newest files are kept.
/// </summary>
internal sealed partial class SnapshotStore(string directory, bool enabled, ServerConfig config, TimeProvider time)
{
    private readonly object _gate = new();
    private const int Keep = 10;

    public string Directory { get; } = directory;
    public bool Enabled => enabled;

    public void Save(IReadOnlyList<SnapshotEntry> entries, string kind)
    {
        if (!enabled) return;
        lock (_gate)
        {
            var now = time.GetLocalNow(); // TorchServe names its snapshots in local time
            var name = $"{now.ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture)}-{kind}.cfg";
            System.IO.Directory.CreateDirectory(Directory);
            var path = Path.Combine(Directory, name);
            var temp = path + ".tmp";
            // The configuration may hold secrets (keystore_pass): only the server's user reads snapshots.
            var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            using (var file = new FileStream(temp, options))
            using (var writer = new StreamWriter(file))
            {
                writer.Write(SnapshotFile.Write(name, now, entries, Properties()));
            }
            File.Move(temp, path, overwrite: true);
            foreach (var old in Snapshots().Skip(Keep)) File.Delete(old);
        }
    }

    /// <summary>The newest snapshot's path and its <c>model_snapshot</c> JSON, or null when there is none (or --ncs).</summary>
    public (string Path, string ModelSnapshot)? LoadLatest()
    {
        if (!enabled) return null;
        foreach (var file in Snapshots())
        {
            var properties = PropertiesFile.Parse(File.ReadAllText(file));
            return properties.TryGetValue(SnapshotFile.ModelSnapshotKey, out var json) ? (file, json) : null;
        }
        return null;
    }

    // What TorchServe's snapshot holds besides the models: the configuration the server runs with, so that TorchServe
    // can start from the file; the model store as the command line set it.
    private Dictionary<string, string> Properties()
    {
        var properties = new Dictionary<string, string>(config.Properties, StringComparer.Ordinal);
        if (config.ModelStore is { } store) properties["model_store"] = store;
        return properties;
    }

    // Newest first; only files named as TorchServe names them ({17-digit timestamp}-{kind}.cfg).
    private IEnumerable<string> Snapshots() =>
        System.IO.Directory.Exists(Directory)
            ? System.IO.Directory.GetFiles(Directory, "*.cfg").Where(f => SnapshotName().IsMatch(Path.GetFileName(f)))
                .OrderByDescending(f => Path.GetFileName(f)[..17], StringComparer.Ordinal).ThenByDescending(Path.GetFileName, StringComparer.Ordinal)
            : [];

    [GeneratedRegex(@"^\d{17}-[^/]*\.cfg$")]
    private static partial Regex SnapshotName();
}
