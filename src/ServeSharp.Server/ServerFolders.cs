using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Hosting;

namespace ServeSharp.Server;

/// <summary>
/// The server's scratch folders under the temp folder, one set per running host: extracted archives, compiled
/// <c>.cs</c> handlers and worker-process sockets. Removed when the host stops (it is the first hosted service, so it
/// stops last, after every model has drained); the folders of a server that died (kill -9) are removed by the next start.
/// </summary>
internal sealed partial class ServerFolders : IHostedService
{
    private static readonly string Parent = Path.Combine(Path.GetTempPath(), "servesharp");

    public ServerFolders()
    {
        RemoveStale();
        Root = Path.Combine(Parent, $"{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}");
        Directory.CreateDirectory(Root);
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

    // "<pid>-<8 hex>" of a process that no longer runs; also the per-pid folders of earlier versions ("models-<pid>").
    private static void RemoveStale()
    {
        if (!Directory.Exists(Parent)) return;
        foreach (var dir in Directory.EnumerateDirectories(Parent))
        {
            var match = Owned().Match(Path.GetFileName(dir));
            if (match.Success && !Directory.Exists($"/proc/{int.Parse(match.Groups["pid"].Value, CultureInfo.InvariantCulture)}")) TryDelete(dir);
        }
    }

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

    [GeneratedRegex(@"^(?:(?<pid>[0-9]+)-[0-9a-f]{8}|(?:models|compiled|workers)-(?<pid>[0-9]+))$")]
    private static partial Regex Owned();
}
