using System.Diagnostics;
using System.Globalization;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace ServeSharp.Server.Cli;

/// <summary>
/// The background side of <c>--start</c> / <c>--stop</c>: a pid file, a child process in --foreground mode
/// with its raw output in logs/, and SIGTERM for a graceful stop.
/// </summary>
internal static class Daemon
{
    private const string PidFilePrefix = ".servesharp-";

    /// <summary>
    /// The pid file of one server: <c>--pid-file</c>, else SERVESHARP_PID_FILE, else one per configuration in the temp
    /// folder, named after <paramref name="identity"/> (the config file in use, else the model store, else the working
    /// directory) — so two servers with different configurations on one host never see, or stop, each other.
    /// TorchServe keeps one pid file for the whole host; it lives in the temp folder rather than beside the configuration
    /// because KServe mounts the configuration read-only.
    /// </summary>
    public static string PidFileFor(string? explicitPath, string? identity)
    {
        if (explicitPath is { Length: > 0 }) return Path.GetFullPath(explicitPath);
        if (Environment.GetEnvironmentVariable("SERVESHARP_PID_FILE") is { Length: > 0 } p) return Path.GetFullPath(p);
        var key = Path.GetFullPath(identity ?? Directory.GetCurrentDirectory());
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..16];
        return Path.Combine(Path.GetTempPath(), $"{PidFilePrefix}{hash}.pid");
    }

    /// <summary>Whether <paramref name="pidFile"/> came from --pid-file or SERVESHARP_PID_FILE rather than the configuration.</summary>
    public static bool IsExplicit(string? explicitPath) =>
        explicitPath is { Length: > 0 } || Environment.GetEnvironmentVariable("SERVESHARP_PID_FILE") is { Length: > 0 };

    /// <summary>
    /// Every running server's pid file in the temp folder (for a <c>--stop</c> that names none: with a single server
    /// running, it is the one, as torchserve --stop would find it).
    /// </summary>
    public static IReadOnlyList<(string PidFile, int Pid, string Identity)> RunningServers()
    {
        var found = new List<(string, int, string)>();
        foreach (var file in Directory.EnumerateFiles(Path.GetTempPath(), PidFilePrefix + "*.pid"))
        {
            if (RunningPid(file) is { } pid) found.Add((file, pid, Identity(file) ?? "?"));
        }
        return found;
    }

    /// <summary>
    /// The pid of a running server, or null. A stale pid file never blocks a start: the pid must be alive (not a
    /// zombie left by kill -9) and be the same process that wrote the file (its start time matches), not a later
    /// program that was given the same pid.
    /// </summary>
    public static int? RunningPid(string pidFile)
    {
        string[] fields;
        try
        {
            fields = File.ReadLines(pidFile).FirstOrDefault()?.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        if (fields.Length == 0 || !int.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) return null;
        if (ProcStat(pid) is not var (state, started) || state is 'Z' or 'X') return null;
        return fields.Length < 2 || fields[1] == started ? pid : null;
    }

    /// <summary>Writes "pid start-time" (the start time tells this process from a later one with the same pid) and, on
    /// the second line, what the server was started with (for --stop's messages).</summary>
    public static void WritePid(string pidFile, string identity = "")
    {
        var pid = Environment.ProcessId;
        var started = ProcStat(pid)?.Started;
        var first = started is null ? pid.ToString(CultureInfo.InvariantCulture) : $"{pid} {started}";
        File.WriteAllText(pidFile, $"{first}\n{identity}\n");
    }

    public static void RemovePid(string pidFile)
    {
        if (PidFileOwner(pidFile) == Environment.ProcessId) File.Delete(pidFile);
    }

    private static string? Identity(string pidFile)
    {
        try
        {
            return File.ReadLines(pidFile).Skip(1).FirstOrDefault();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static int? PidFileOwner(string pidFile)
    {
        try
        {
            var first = File.ReadAllText(pidFile).Split(' ', '\n')[0];
            return int.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    // /proc/PID/stat: "pid (comm) state ppid ... starttime(22nd) ..."; comm may hold spaces and parentheses.
    private static (char State, string Started)? ProcStat(int pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        var rest = text[(text.LastIndexOf(')') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return rest.Length > 19 ? (rest[0][0], rest[19]) : null;
    }

    /// <summary>Starts this program again with --foreground, detached, its output appended to <paramref name="logFile"/>.</summary>
    public static Process SpawnForeground(IReadOnlyList<string> args, string logFile)
    {
        var self = Environment.ProcessPath!;
        var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        // exec with redirections: the server holds the log file, not our stdout/stderr (a caller's pipe would never close).
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("log=\"$1\"; shift; exec \"$@\" >>\"$log\" 2>&1 </dev/null");
        info.ArgumentList.Add("servesharp");
        info.ArgumentList.Add(logFile);
        info.ArgumentList.Add(self);
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") info.ArgumentList.Add(typeof(Daemon).Assembly.Location);
        info.Environment[DetachVariable] = "1";
        foreach (var a in args) info.ArgumentList.Add(a);
        info.ArgumentList.Add("--foreground");
        return Process.Start(info)!;
    }

    private const string DetachVariable = "SERVESHARP_DETACH";

    /// <summary>
    /// In the server that --start spawned: leaves the launcher's session and process group, so the server outlives the
    /// shell (or the whole session) that ran --start, and a terminal's hang-up never reaches it.
    /// </summary>
    /// <returns>Whether this process was spawned by --start (so nobody reads its console).</returns>
    public static bool DetachIfSpawned()
    {
        if (Environment.GetEnvironmentVariable(DetachVariable) != "1") return false;
        Environment.SetEnvironmentVariable(DetachVariable, null); // worker processes must not inherit it
        if (!OperatingSystem.IsLinux() || !NativeLibrary.TryLoad("libc.so.6", out var libc)) return true;
        // Looked up at run time, as Nvml is: the server needs no unsafe code for one call.
        Marshal.GetDelegateForFunctionPointer<SetSidFn>(NativeLibrary.GetExport(libc, "setsid"))();
        return true;
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int SetSidFn();

    /// <summary>Waits until <paramref name="pingUrl"/> answers, or the child dies, or time runs out.</summary>
    public static async Task<bool> WaitUntilAnsweringAsync(Process child, string pidFile, Uri pingUrl, X509Certificate2? certificate, TimeSpan timeout)
    {
        // Over https://, our own child presents the configured certificate, which may be self-signed: that one is trusted.
        using var handler = new SocketsHttpHandler
        {
            SslOptions = { RemoteCertificateValidationCallback = (_, presented, _, errors) => errors == SslPolicyErrors.None || IsSame(presented, certificate) },
        };
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(2) };
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(200));
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (child.HasExited && RunningPid(pidFile) is null) return false;
            try
            {
                using var response = await http.GetAsync(pingUrl);
                return true;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }
            await timer.WaitForNextTickAsync();
        }
        return false;
    }

    private static bool IsSame(X509Certificate? presented, X509Certificate2? expected) =>
        presented is not null && expected is not null && presented.GetCertHashString() == expected.GetCertHashString();

    /// <summary>SIGTERM, then waits for the process to finish its in-flight work and exit.</summary>
    public static async Task<bool> StopAsync(int pid, TimeSpan timeout)
    {
        using var kill = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", $"kill -TERM {pid}"]) { UseShellExecute = false })!;
        await kill.WaitForExitAsync();
        try
        {
            using var process = Process.GetProcessById(pid);
            using var cts = new CancellationTokenSource(timeout);
            await process.WaitForExitAsync(cts.Token);
            return true;
        }
        catch (ArgumentException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
