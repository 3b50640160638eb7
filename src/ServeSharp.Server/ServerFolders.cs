using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Hosting;

namespace ServeSharp.Server;

/// <summary>
/// The server's scratch folders, one private folder per running host in the temp folder: extracted archives, compiled
/// <c>.cs</c> handlers and worker-process sockets. Removed when the host stops (it is the first hosted service, so it
/// stops last, after every model has drained); the folders of a server that died (kill -9) are removed by the next start.
/// </summary>
internal sealed partial class ServerFolders : IHostedService
{
    public ServerFolders()
    {
        RemoveStale();
        // mkdtemp in the sticky temp folder: created 0700 and ours, so no other user can rename what is inside or plant
        // a socket there; then 0711, so a worker_user can reach the paths it is given (and list nothing).
        Root = Directory.CreateTempSubdirectory($"servesharp-{Environment.ProcessId}-").FullName;
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(Root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
    }

    public string Root { get; }

    /// <summary>Where archives are extracted while their model is registered.</summary>
    public string Models => Path.Combine(Root, "models");

    /// <summary>Compiled <c>.cs</c> handlers, so that worker processes load an image instead of compiling again.</summary>
    public string CompiledHandlers => Path.Combine(Root, "compiled");

    /// <summary>Worker-process sockets (deleted as soon as the worker has connected).</summary>
    public string WorkerSockets => Path.Combine(Root, "workers");

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken)
    {
        TryDelete(Root);
        return Task.CompletedTask;
    }

    // "servesharp-<pid>-*" of a process that no longer runs; also what earlier versions left in a shared "servesharp"
    // folder ("<pid>-<hex>", "models-<pid>", ...). Other users' folders cannot be deleted and are left alone.
    private static void RemoveStale()
    {
        var temp = Path.GetTempPath();
        foreach (var dir in Directory.EnumerateDirectories(temp, "servesharp-*"))
        {
            if (Owned().Match(Path.GetFileName(dir)) is { Success: true } m && Dead(m)) TryDelete(dir);
        }
        var legacy = Path.Combine(temp, "servesharp");
        if (!Directory.Exists(legacy)) return;
        foreach (var dir in Directory.EnumerateDirectories(legacy))
        {
            if (Legacy().Match(Path.GetFileName(dir)) is { Success: true } m && Dead(m)) TryDelete(dir);
        }
    }

    private static bool Dead(Match match) => !Directory.Exists($"/proc/{int.Parse(match.Groups["pid"].Value, CultureInfo.InvariantCulture)}");

    private static void TryDelete(string dir)
    {
        try
        {
            Directory.Delete(dir, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Another user's folder, or one in use: it is left for its owner.
        }
    }

    [GeneratedRegex(@"^servesharp-(?<pid>[0-9]+)-")]
    private static partial Regex Owned();

    [GeneratedRegex(@"^(?:(?<pid>[0-9]+)-[0-9a-f]{8}|(?:models|compiled|workers)-(?<pid>[0-9]+))$")]
    private static partial Regex Legacy();
}
