using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace ServeSharp.Server.Conversion;

/// <summary>A Python that can import torch, as its probe saw it.</summary>
internal sealed record PythonInfo(string Executable, string Version, string Torch, string? Torchvision, string? Onnx);

/// <summary>
/// The user's Python with torch, which runs convert's torch side (<c>torch_convert.py</c>, embedded in servesharp and
/// written next to each conversion's work files). Found as the issue asks: <c>--python</c>, else the first
/// <c>python3</c> or <c>python</c> on PATH that can import torch — the first one on PATH is often a pyenv or venv
/// Python without it, so every candidate is probed.
/// </summary>
internal static class TorchPython
{
    public const string ScriptName = "torch_convert.py";

    /// <summary>The script's exit code for a refusal it explains in its result file.</summary>
    public const int Refused = 3;

    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromMinutes(2);

    /// <summary>Writes the embedded script into <paramref name="folder"/> (a private work folder) and returns its path.</summary>
    public static string WriteScript(string folder)
    {
        using var resource = typeof(TorchPython).Assembly.GetManifestResourceStream(ScriptName)
            ?? throw new InvalidOperationException($"{ScriptName} is not embedded in this build of servesharp");
        var path = Path.Combine(folder, ScriptName);
        using var file = File.Create(path);
        resource.CopyTo(file);
        return path;
    }

    /// <summary>The Python to use: <paramref name="explicitPath"/> if it has torch, else the first on PATH that does.</summary>
    public static async Task<PythonInfo> LocateAsync(string? explicitPath, string script, CancellationToken cancellationToken)
    {
        if (explicitPath is not null)
        {
            if (explicitPath.Contains('/', StringComparison.Ordinal) && !File.Exists(explicitPath))
                throw new ConversionException($"--python {explicitPath}: no such file");
            var (info, problem) = await ProbeAsync(explicitPath, script, cancellationToken);
            return info ?? throw new ConversionException(
                $"--python {explicitPath}: {problem}. Install PyTorch into that Python (pip install torch torchvision), or name one that has it.");
        }

        var tried = new List<string>();
        foreach (var candidate in Candidates())
        {
            var (info, problem) = await ProbeAsync(candidate, script, cancellationToken);
            if (info is not null) return info;
            tried.Add($"{candidate}: {problem}");
        }
        var list = tried.Count == 0 ? "there is no python3 or python on PATH" : "tried " + string.Join("; ", tried);
        throw new ConversionException(
            $"no Python on PATH can import torch ({list}). Converting needs the Python your TorchServe models ran with: " +
            "install PyTorch (pip install torch torchvision) or name that Python with --python PATH.");
    }

    /// <summary>python3 and python in each PATH folder, in PATH order, each real file once.</summary>
    public static IEnumerable<string> Candidates()
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            foreach (var name in (string[])["python3", "python"])
            {
                var path = Path.Combine(dir, name);
                if (!File.Exists(path)) continue;
                // pyenv's shims are scripts that pick a Python each time: compare them by path, real binaries by target.
                var real = new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(path);
                if (seen.Add(real)) yield return path;
            }
        }
    }

    /// <summary>Runs the script's probe: versions when torch imports, else what went wrong in a few words.</summary>
    private static async Task<(PythonInfo? Info, string Problem)> ProbeAsync(string python, string script, CancellationToken cancellationToken)
    {
        ProcessResult result;
        try
        {
            result = await RunAsync(python, [script, "probe"], null, ProbeTimeout, cancellationToken);
        }
        catch (ConversionException e)
        {
            return (null, e.Message);
        }
        var line = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault();
        if (line is null || !line.StartsWith('{'))
            return (null, $"it does not run ServeSharp's converter script (exit code {result.ExitCode}: {LastLine(result.Stderr)}); it needs Python 3.8 or later");
        try
        {
            var probe = JsonDocument.Parse(line).RootElement;
            if (probe.TryGetProperty("error", out var error))
                return (null, $"cannot import torch ({error.GetString()})");
            return (new PythonInfo(python, probe.GetProperty("python").GetString() ?? "?", probe.GetProperty("torch").GetString() ?? "?",
                String(probe, "torchvision"), String(probe, "onnx")), "");
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return (null, $"its probe answered something unexpected: {line}");
        }
    }

    private static string? String(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public static string LastLine(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "no output";

    internal sealed record ProcessResult(int ExitCode, string Stdout, string Stderr);

    /// <summary>
    /// Runs <paramref name="python"/> to completion. Cancellation and <paramref name="timeout"/> kill it with its children
    /// (a model that hangs in torch must not hang the command or the registration that waits for it).
    /// </summary>
    public static async Task<ProcessResult> RunAsync(string python, IEnumerable<string> args, string? workingDirectory, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo(python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Directory.GetCurrentDirectory(),
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var a in args) info.ArgumentList.Add(a);
        // The archive's modules are imported from a throw-away folder: no __pycache__ written into it.
        info.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
        info.Environment["PYTHONIOENCODING"] = "utf-8";

        Process process;
        try
        {
            process = Process.Start(info) ?? throw new ConversionException($"{python} did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new ConversionException($"{python} cannot be run ({e.Message})");
        }
        using (process)
        {
            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
            var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            if (timeout is { } t) limit.CancelAfter(t);
            try
            {
                await process.WaitForExitAsync(limit.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync(CancellationToken.None);
                cancellationToken.ThrowIfCancellationRequested();
                throw new ConversionException($"{python} did not finish within {timeout!.Value.TotalMinutes:0.#} minutes and was stopped");
            }
            return new ProcessResult(process.ExitCode, await stdout, await stderr);
        }
    }
}
