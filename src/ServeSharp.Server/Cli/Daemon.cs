using System.Diagnostics;

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

    public static int? RunningPid()
    {
        if (!File.Exists(PidFile) || !int.TryParse(File.ReadAllText(PidFile).Trim(), out var pid)) return null;
        try
        {
            using var process = Process.GetProcessById(pid);
            return process.HasExited ? null : pid;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    public static void WritePid() => File.WriteAllText(PidFile, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public static void RemovePid()
    {
        if (File.Exists(PidFile) && File.ReadAllText(PidFile).Trim() == Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture))
            File.Delete(PidFile);
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
