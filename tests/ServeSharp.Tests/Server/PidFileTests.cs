using System.Diagnostics;
using ServeSharp.Server.Cli;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>A stale pid file (a dead pid, a zombie left by kill -9, a pid another program now has) never blocks a start.</summary>
public sealed class PidFileTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public void The_pid_file_of_this_process_names_a_running_server()
    {
        var file = _dir.File("pid");
        Daemon.WritePid(file);
        Assert.Equal(Environment.ProcessId, Daemon.RunningPid(file));
    }

    [Fact]
    public async Task A_dead_pid_is_not_running()
    {
        using var gone = Process.Start("true")!;
        await gone.WaitForExitAsync();
        var file = _dir.File("pid");
        File.WriteAllText(file, gone.Id.ToString());
        Assert.Null(Daemon.RunningPid(file));
    }

    [Fact]
    public async Task A_zombie_is_not_running()
    {
        // sh starts a short child, then becomes a sleep that never reaps it: the child stays a zombie, as a server
        // killed with -9 does until its parent reaps it.
        using var parent = Process.Start(new ProcessStartInfo("sh", ["-c", "sleep 0 & echo $!; exec sleep 30"]) { RedirectStandardOutput = true })!;
        try
        {
            var zombie = int.Parse((await parent.StandardOutput.ReadLineAsync())!);
            for (var i = 0; i < 100 && !File.ReadAllText($"/proc/{zombie}/stat").Contains(") Z ", StringComparison.Ordinal); i++) await Task.Delay(50);
            var file = _dir.File("pid");
            File.WriteAllText(file, zombie.ToString());
            Assert.Null(Daemon.RunningPid(file));
        }
        finally
        {
            parent.Kill();
        }
    }

    [Fact]
    public void A_pid_now_held_by_another_program_is_not_running()
    {
        // This test process is alive, but it did not write the file: the start time recorded there is not its own.
        var file = _dir.File("pid");
        File.WriteAllText(file, $"{Environment.ProcessId} 1");
        Assert.Null(Daemon.RunningPid(file));
    }

    public void Dispose() => _dir.Dispose();
}
