using System.Diagnostics;
using System.Text.Json.Nodes;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Playground;

/// <summary>
/// Debian's headless Chromium, driven over the DevTools protocol directly. Why not Microsoft.Playwright: its .NET
/// package drives the browser through a Node.js driver it ships, pinned to browser builds it downloads, and it is not
/// in this machine's package cache; the tests need a handful of DevTools commands (navigate, evaluate, set a file
/// input, screenshot) that a WebSocket carries with nothing to install but the browser, at the system's version.
/// </summary>
internal sealed class Chromium : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private readonly Process _process;
    private readonly TempDir _profile;

    private Chromium(Process process, TempDir profile, CdpConnection connection)
    {
        _process = process;
        _profile = profile;
        Connection = connection;
    }

    public CdpConnection Connection { get; }

    public static async Task<Chromium> StartAsync()
    {
        var executable = new[] { "/usr/bin/chromium", "/usr/bin/chromium-browser" }.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("chromium is not installed: apt-get install chromium (./run-tests.sh installs it)");
        var profile = new TempDir();
        var info = new ProcessStartInfo(executable) { RedirectStandardOutput = true, RedirectStandardError = true };
        // --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start. Port 0: the browser picks a
        // free port and writes it, with the browser's WebSocket path, to DevToolsActivePort in its profile.
        foreach (var arg in new[]
                 {
                     "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--no-default-browser-check", "--disable-extensions", "--disable-background-networking", "--disable-sync",
                     "--disable-component-update", "--mute-audio", "--window-size=1280,900", "--remote-debugging-port=0",
                     $"--user-data-dir={profile.Path}", "about:blank",
                 })
        {
            info.ArgumentList.Add(arg);
        }
        var process = Process.Start(info)!;
        var output = new System.Text.StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var endpoint = await ActivePortAsync(Path.Combine(profile.Path, "DevToolsActivePort"), process, output);
            using var connecting = new CancellationTokenSource(StartTimeout);
            return new Chromium(process, profile, await CdpConnection.ConnectAsync(endpoint, connecting.Token));
        }
        catch
        {
            process.Kill(entireProcessTree: true);
            process.Dispose();
            profile.Dispose();
            throw;
        }
    }

    /// <summary>A new tab, with the page, runtime and log events on so its errors are collected.</summary>
    public async Task<BrowserPage> NewPageAsync()
    {
        var target = await Connection.SendAsync("Target.createTarget", new JsonObject { ["url"] = "about:blank" });
        var targetId = target.GetProperty("targetId").GetString()!;
        var attached = await Connection.SendAsync("Target.attachToTarget", new JsonObject { ["targetId"] = targetId, ["flatten"] = true });
        var page = new BrowserPage(Connection, targetId, attached.GetProperty("sessionId").GetString()!);
        foreach (var domain in (string[])["Page.enable", "Runtime.enable", "Log.enable", "DOM.enable"]) await page.SendAsync(domain);
        return page;
    }

    // Bounded wait for the browser to write its port: a condition, not a guess at how long a start takes.
    private static async Task<Uri> ActivePortAsync(string file, Process process, System.Text.StringBuilder output)
    {
        var deadline = DateTime.UtcNow + StartTimeout;
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited) throw new InvalidOperationException($"chromium exited ({process.ExitCode}):\n{Captured(output)}");
            if (File.Exists(file) && File.ReadAllLines(file) is [var port, var path, ..])
                return new Uri($"ws://127.0.0.1:{port.Trim()}{path.Trim()}");
            await Task.Delay(50);
        }
        throw new TimeoutException($"chromium wrote no DevToolsActivePort in {StartTimeout.TotalSeconds} s:\n{Captured(output)}");
    }

    private static string Captured(System.Text.StringBuilder output)
    {
        lock (output) return output.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        await Connection.DisposeAsync();
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        _process.Dispose();
        _profile.Dispose();
    }
}
