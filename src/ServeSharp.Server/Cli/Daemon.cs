using System.Diagnostics;
using System.Globalization;

namespace ServeSharp.Server.Cli;

/// <summary>
/// The background side of <c>--start</c> / <c>--stop</c>: a pid file, a child process in --foreground mode
/// with its output in logs/, and SIGTERM for a graceful stop.
/// </summary>
internal static class Daemon
{
    /// <summary>TorchServe keeps its pid in the temp folder; SERVESHARP_PID_FILE moves it (tests run servers side by side).</summary>
    public static string PidFile =>
        Environment.GetEnvironmentVariable("SERVESHARP_PID_FILE") is { Length: > 0 } p ? p : Path.Combine(Path.GetTempPath(), ".servesharp.pid");

    /// <summary>
    /// The pid of a running server, or null. A stale pid file never blocks a start: the pid must be alive (not a
    /// zombie left by kill -9) and be the same process that wrote the file (its start time matches), not a later
    /// program that was given the same pid.
    /// </summary>
    public static int? RunningPid(string? pidFile = null)
    {
        string[] fields;
        try
        {
            fields = File.ReadAllText(pidFile ?? PidFile).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        if (fields.Length == 0 || !int.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) return null;
        if (ProcStat(pid) is not var (state, started) || state is 'Z' or 'X') return null;
        return fields.Length < 2 || fields[1] == started ? pid : null;
    }

    /// <summary>Writes "pid start-time" (the start time tells this process from a later one with the same pid).</summary>
    public static void WritePid(string? pidFile = null)
    {
        var pid = Environment.ProcessId;
        var started = ProcStat(pid)?.Started;
        File.WriteAllText(pidFile ?? PidFile, started is null ? pid.ToString(CultureInfo.InvariantCulture) : $"{pid} {started}");
    }

    public static void RemovePid()
    {
        if (PidFileOwner() == Environment.ProcessId) File.Delete(PidFile);
    }

    private static int? PidFileOwner()
    {
        try
        {
            var first = File.ReadAllText(PidFile).Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
            return int.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or IndexOutOfRangeException)
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
        foreach (var a in args) info.ArgumentList.Add(a);
        info.ArgumentList.Add("--foreground");
        return Process.Start(info)!;
    }

    /// <summary>Waits until <paramref name="pingUrl"/> answers, or the child dies, or time runs out.</summary>
    public static async Task<bool> WaitUntilAnsweringAsync(Process child, Uri pingUrl, TimeSpan timeout)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(200));
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (child.HasExited && RunningPid() is null) return false;
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
