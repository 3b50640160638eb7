using System.Diagnostics;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>
/// torchserve's command line, run as a user runs it: -v, clear refusals, a --start that outlives the session that ran
/// it, and servers with different configurations on one host that start and stop independently.
/// </summary>
[Collection("server")]
public sealed class CommandLineTests(ModelStoreFixture store)
{
    [Theory]
    [InlineData("-v")]
    [InlineData("--version")]
    public void The_version_flag_prints_the_version_as_torchserve_does(string flag)
    {
        var (code, output) = Servesharp(flag);
        Assert.Equal(0, code);
        Assert.Matches(@"^ServeSharp Version is \d+\.\d+\.\d+\s*$", output);
    }

    [Theory]
    [InlineData("--workflow-store wf", "--workflow-store is not supported")]
    [InlineData("--plugins-path jars", "--plugins-path is not supported")]
    [InlineData("--start --stop", "cannot be used together")]
    [InlineData("--start --no-such-flag", "--no-such-flag")]
    [InlineData("--start --log-config /no/such/log4j2.xml", "--log-config file not found")]
    [InlineData("--start --ts-config /no/such/config.properties", "--ts-config file not found")]
    public void Bad_command_lines_are_refused_with_a_message_naming_the_problem(string args, string expected)
    {
        var (code, output) = Servesharp(args.Split(' '));
        Assert.Equal(2, code);
        Assert.Contains(expected, output);
    }

    [Fact]
    public void Help_lists_torchserves_flags()
    {
        var (code, output) = Servesharp("--help");
        Assert.Equal(0, code);
        foreach (var flag in new[] { "--start", "--stop", "--model-store", "--models", "--ts-config", "--foreground", "--ncs", "--disable-token-auth", "--enable-model-api", "-v" })
            Assert.Contains(flag, output);
    }

    [Fact]
    public async Task A_started_server_outlives_the_whole_session_that_started_it()
    {
        var dir = store.NewWorkDir();
        var server = ServerProcess.Start(dir, store.Store, ["--ncs", "--disable-token-auth"], ownPidFile: true, launch: false);
        // A shell in a session of its own runs --start, then lingers as a terminal would; the whole session is then killed.
        var env = string.Join(' ', server.Environment.Select(kv => $"{kv.Key}='{kv.Value}'"));
        var line = $"env {env} dotnet '{ServerProcess.ServerDll}' --start --ts-config config.properties --ncs --disable-token-auth >start.log 2>&1; echo started >started; exec sleep 300";
        using var session = Process.Start(new ProcessStartInfo("setsid", ["bash", "-c", line]) { WorkingDirectory = dir, UseShellExecute = false })!;
        try
        {
            await WaitForAsync(() => File.Exists(Path.Combine(dir, "started")), "--start did not return:\n" + ReadOr(Path.Combine(dir, "start.log")));
            Assert.Equal(200, ServerProcess.Curl($"{server.InferenceUrl}/ping").Status);
        }
        finally
        {
            Repo.Run("kill", ["-KILL", "--", $"-{session.Id}"]); // setsid made the shell the leader of its own process group
            await session.WaitForExitAsync();
        }
        Assert.Equal(200, ServerProcess.Curl($"{server.InferenceUrl}/ping").Status);
        var (stopCode, stopOutput) = server.Stop();
        Assert.True(stopCode == 0, stopOutput);
        Assert.Contains("has stopped", stopOutput);
    }

    [Fact]
    public async Task Two_servers_with_different_configurations_start_and_stop_independently()
    {
        await using var first = ServerProcess.Start(store.NewWorkDir(), store.Store, ["--ncs", "--disable-token-auth"], ownPidFile: false);
        await using var second = ServerProcess.Start(store.NewWorkDir(), store.Store, ["--ncs", "--disable-token-auth"], ownPidFile: false);
        Assert.Equal(200, ServerProcess.Curl($"{first.InferenceUrl}/ping").Status);
        Assert.Equal(200, ServerProcess.Curl($"{second.InferenceUrl}/ping").Status);

        // Starting the first configuration again is refused: that server runs already.
        var (again, againOutput) = Repo.Run("dotnet", [ServerProcess.ServerDll, "--start", "--ts-config", "config.properties", "--ncs"], first.Directory, 120, first.Environment);
        Assert.Equal(1, again);
        Assert.Contains("already running with this configuration", againOutput);

        // --stop alone cannot tell which of two to stop, and says so; --stop where the first was started stops only it.
        using var elsewhere = new TempDir();
        var (ambiguous, ambiguousOutput) = Repo.Run("dotnet", [ServerProcess.ServerDll, "--stop"], elsewhere.Path, 120, first.Environment);
        Assert.Equal(1, ambiguous);
        Assert.Contains("Several ServeSharp servers are running", ambiguousOutput);
        Assert.Equal(0, first.Stop().ExitCode);
        Assert.NotEqual("200", PingStatus(first));
        Assert.Equal(200, ServerProcess.Curl($"{second.InferenceUrl}/ping").Status);

        // With one left, --stop from anywhere finds it, as torchserve --stop does.
        var (stopped, stoppedOutput) = Repo.Run("dotnet", [ServerProcess.ServerDll, "--stop"], elsewhere.Path, 120, second.Environment);
        Assert.True(stopped == 0, stoppedOutput);
        Assert.Contains("has stopped", stoppedOutput);
        Assert.NotEqual("200", PingStatus(second));
    }

    private static (int Code, string Output) Servesharp(params string[] args) => Repo.Run("dotnet", [ServerProcess.ServerDll, .. args], timeoutSeconds: 60);

    // "000" when nothing listens (curl's exit code is not 0 then, so ServerProcess.Curl would fail the test).
    private static string PingStatus(ServerProcess server) =>
        Repo.Run("curl", ["-s", "-o", "/dev/null", "--max-time", "5", "-w", "%{http_code}", $"{server.InferenceUrl}/ping"]).Output.Trim();

    private static string ReadOr(string file) => File.Exists(file) ? File.ReadAllText(file) : "(nothing)";

    private static async Task WaitForAsync(Func<bool> condition, string failure)
    {
        for (var i = 0; i < 1200 && !condition(); i++) await Task.Delay(100); // bounded: a safety net, not a timing assertion
        Assert.True(condition(), failure);
    }
}
