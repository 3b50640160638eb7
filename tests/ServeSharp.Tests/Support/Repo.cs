using System.Diagnostics;

namespace ServeSharp.Tests.Support;

/// <summary>Paths into the checkout and a way to run its tools (Debian's Python, the archiver) as real processes.</summary>
internal static class Repo
{
    public static string Root { get; } = FindRoot();

    /// <summary>Debian's Python: the one that sees python3-torch / python3-onnx (the pyenv one on PATH does not).</summary>
    public const string Python = "/usr/bin/python3";

    public static string Tool(string relative) => Path.Combine(Root, "tools", relative);

    /// <summary>Runs a process to completion and returns its exit code and combined output.</summary>
    public static (int ExitCode, string Output) Run(string file, IEnumerable<string> args, string? workingDirectory = null, int timeoutSeconds = 600, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? Root,
        };
        if (environment is not null)
        {
            foreach (var (k, v) in environment) info.Environment[k] = v;
        }
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeoutSeconds * 1000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in {timeoutSeconds}s");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>Runs a tools/ Python script with Debian's interpreter; fails the test with its output if it fails.</summary>
    /// <remarks>
    /// The scripts generate fixtures once per cache (fitting a DeepLab on photographs takes minutes on 2 cores, and
    /// several times that on a loaded machine), so they get a generous limit: a hung script still ends, a slow one passes.
    /// </remarks>
    public static string RunPython(string script, params string[] args)
    {
        var (code, output) = Run(Python, [Tool(script), .. args], timeoutSeconds: 2400);
        if (code != 0) throw new InvalidOperationException($"{script} failed ({code}):\n{output}");
        return output;
    }

    /// <summary>Runs the archiver CLI (the test build's servesharp-archiver.dll) as its own process.</summary>
    public static (int ExitCode, string Output) Archiver(params string[] args) =>
        Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "servesharp-archiver.dll"), .. args]);

    private static string FindRoot()
    {
        // A build placed outside the checkout (-p:OutDir=...) says where the checkout is.
        if (Environment.GetEnvironmentVariable("SERVESHARP_REPO") is { Length: > 0 } root) return root;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ServeSharp.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("cannot find the repository root (ServeSharp.sln) above " + AppContext.BaseDirectory);
    }
}
