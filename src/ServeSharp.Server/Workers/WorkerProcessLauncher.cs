using System.Diagnostics;

namespace ServeSharp.Server.Workers;

/// <summary>
/// Starts <c>servesharp worker --socket PATH</c>: the same program, in a child process, with a scrubbed
/// environment (only what a runtime and a GPU need: no server secrets, no TS_* configuration), its working
/// folder in the model's folder and, when the server runs as root and <c>worker_user</c> is set, as that user.
/// </summary>
internal static class WorkerProcessLauncher
{
    // Everything else in the server's environment stays behind (tokens, cloud credentials, TS_* settings).
    private static readonly string[] PassedVariables =
    [
        "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "DOTNET_ROOT", "DOTNET_ROOT_X64", "LD_LIBRARY_PATH",
        "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "CUDA_PATH", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
    ];

    public static ProcessStartInfo StartInfo(string socketPath, string workingDirectory, string? workerUser)
    {
        var (host, prefix) = Command();
        var account = workerUser is null ? null : Account(workerUser);
        var info = new ProcessStartInfo(account is null ? host : "setpriv")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory,
        };
        if (account is { } a)
        {
            foreach (var arg in (string[])["--reuid", a.Uid, "--regid", a.Gid, "--init-groups", "--", host]) info.ArgumentList.Add(arg);
        }
        foreach (var arg in prefix) info.ArgumentList.Add(arg);
        foreach (var arg in (string[])["worker", "--socket", socketPath]) info.ArgumentList.Add(arg);

        var passed = PassedVariables.Select(n => (n, Environment.GetEnvironmentVariable(n))).Where(v => v.Item2 is not null).ToList();
        info.Environment.Clear();
        foreach (var (name, value) in passed) info.Environment[name] = value;
        info.Environment["HOME"] = account?.Home ?? Environment.GetEnvironmentVariable("HOME") ?? "/";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        return info;
    }

    /// <summary>
    /// The same program in worker mode: this apphost (or single-file publish) itself, or the dotnet host with the server's
    /// assembly (`dotnet servesharp.dll`, and the test host, whose server assembly is not its entry point).
    /// </summary>
    private static (string Host, string[] Prefix) Command()
    {
        var self = typeof(WorkerProcessLauncher).Assembly.Location;
        var current = Environment.ProcessPath;
        if (current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet") return (current, [self]);
        if (current is not null && Path.GetFileName(current) == "servesharp") return (current, []);
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h : "dotnet";
        return (host, [self]);
    }

    private sealed record UserAccount(string Uid, string Gid, string Home);

    // setpriv takes numbers; /etc/passwd has them (and the home the worker gets).
    private static UserAccount Account(string user)
    {
        if (!IsRoot())
            throw new InvalidOperationException($"worker_user '{user}' needs the server to run as root");
        foreach (var line in File.ReadLines("/etc/passwd"))
        {
            var f = line.Split(':');
            if (f.Length >= 6 && (f[0] == user || f[2] == user)) return new UserAccount(f[2], f[3], Directory.Exists(f[5]) ? f[5] : "/tmp");
        }
        throw new InvalidOperationException($"worker_user '{user}' is not a user on this machine (/etc/passwd)");
    }

    private static bool IsRoot() => File.ReadLines("/proc/self/status").Any(l => l.StartsWith("Uid:", StringComparison.Ordinal) && l.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1] == "0");
}
