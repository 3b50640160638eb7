using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace ServeSharp.Bench;

/// <summary>A server process the benchmark started on loopback, with its pid (for RSS) and a client.</summary>
public sealed class BenchServer : IDisposable
{
    private readonly Process _process;

    private BenchServer(string name, Process process, int port, int? metricsPort = null)
    {
        Name = name;
        _process = process;
        Http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromMinutes(10) };
        MetricsPort = metricsPort;
    }

    /// <summary>What ServeSharp servers printed about their model-config.yaml ("unknown key ..."), over the whole run.</summary>
    public static System.Collections.Concurrent.ConcurrentQueue<string> ConfigWarnings { get; } = new();

    /// <summary>The metrics API's Prometheus text (ServeSharp only).</summary>
    public async Task<string> MetricsTextAsync()
    {
        if (MetricsPort is not { } port) throw new InvalidOperationException($"{Name} has no metrics port");
        using var client = new HttpClient();
        return await client.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"));
    }

    /// <summary>The server's metrics API port (ServeSharp only).</summary>
    public int? MetricsPort { get; }

    /// <summary>The gRPC inference port (ServeSharp only; TorchServe's and OIP v2's services).</summary>
    public int? GrpcInferencePort { get; private init; }

    /// <summary>
    /// Batches formed so far, by size, from the <c>ts_batch_size</c> histogram; null when the server has no such
    /// metric (an older build, or the peer).
    /// </summary>
    public async Task<SortedDictionary<int, long>?> BatchSizesAsync()
    {
        if (MetricsPort is not { } port) return null;
        using var client = new HttpClient();
        var text = await client.GetStringAsync($"http://127.0.0.1:{port}/metrics?name[]=ts_batch_size");
        var cumulative = new SortedDictionary<double, long>();
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith("ts_batch_size_bucket{", StringComparison.Ordinal)) continue;
            var le = line[(line.IndexOf("le=\"", StringComparison.Ordinal) + 4)..];
            le = le[..le.IndexOf('"')];
            var bound = le == "+Inf" ? double.PositiveInfinity : double.Parse(le, System.Globalization.CultureInfo.InvariantCulture);
            cumulative[bound] = cumulative.GetValueOrDefault(bound) + (long)double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        }
        if (cumulative.Count == 0) return null;
        var sizes = new SortedDictionary<int, long>();
        long previous = 0;
        foreach (var (bound, count) in cumulative)
        {
            if (count > previous) sizes[double.IsInfinity(bound) ? int.MaxValue : (int)bound] = count - previous;
            previous = count;
        }
        return sizes;
    }

    public string Name { get; }
    public HttpClient Http { get; }
    public int Pid => _process.Id;

    /// <summary>servesharp --start --foreground in <paramref name="dir"/>, its config on free ports, models from the store.</summary>
    public static async Task<BenchServer> StartServeSharpAsync(string dir, string modelStore, string[] models, string? serverDll = null)
    {
        var port = FreePort();
        var metricsPort = FreePort();
        var grpcPort = FreePort();
        File.WriteAllText(Path.Combine(dir, "config.properties"), $"""
            inference_address=http://127.0.0.1:{port}
            management_address=http://127.0.0.1:{FreePort()}
            metrics_address=http://127.0.0.1:{metricsPort}
            grpc_inference_port={grpcPort}
            grpc_management_port={FreePort()}
            model_store={modelStore}
            max_request_size=67108864
            max_response_size=67108864
            job_queue_size=256
            """);
        var info = new ProcessStartInfo("dotnet") { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])[serverDll ?? ServerDll, "--start", "--foreground", "--ncs", "--disable-token-auth", "--ts-config", "config.properties", "--models", .. models])
            info.ArgumentList.Add(a);
        info.Environment["SERVESHARP_PID_FILE"] = Path.Combine(dir, "servesharp.pid");
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, e) => KeepConfigWarning(e.Data);
        process.ErrorDataReceived += (_, e) => KeepConfigWarning(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new BenchServer("ServeSharp", process, port, metricsPort) { GrpcInferencePort = grpcPort };
        await server.WaitHealthyAsync();
        return server;
    }

    /// <summary>The server the bench measures: its own build, or another one (SERVESHARP_BENCH_SERVER=path/servesharp.dll) for before/after comparisons.</summary>
    public static string ServerDll => Environment.GetEnvironmentVariable("SERVESHARP_BENCH_SERVER") is { Length: > 0 } other ? other : Path.Combine(AppContext.BaseDirectory, "servesharp.dll");

    /// <summary>tools/bench/peer.py: TorchServe's image_segmenter path in Python.</summary>
    public static async Task<BenchServer> StartPeerAsync(string root, string state, int workers, int threads)
    {
        var port = FreePort();
        var info = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])[Path.Combine(root, "tools", "bench", "peer.py"), "--state", state, "--port", port.ToString(), "--workers", workers.ToString(), "--threads", threads.ToString()])
            info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new BenchServer("peer (TorchServe handler path)", process, port);
        await server.WaitHealthyAsync();
        return server;
    }

    private static void KeepConfigWarning(string? line)
    {
        if (line is not null && line.Contains("unknown key", StringComparison.Ordinal)) ConfigWarnings.Enqueue(line);
    }

    private async Task WaitHealthyAsync()
    {
        for (var i = 0; i < 600; i++)
        {
            if (_process.HasExited) throw new InvalidOperationException($"{Name} exited with {_process.ExitCode}");
            try
            {
                using var r = await Http.GetAsync("/ping");
                if (r.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException)
            {
            }
            await Task.Delay(200);
        }
        throw new TimeoutException($"{Name} did not become healthy");
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
        Http.Dispose();
        _process.Dispose();
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }
}
