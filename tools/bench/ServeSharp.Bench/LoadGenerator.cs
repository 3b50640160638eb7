using System.Diagnostics;

namespace ServeSharp.Bench;

/// <summary>One scenario's figures.</summary>
public sealed record LoadResult(int Requests, int Failures, double Seconds, double P50, double P90, double P99, long PeakRssBytes, double Mean = double.NaN)
{
    public double Throughput => Requests / Seconds;
}

/// <summary>
/// A closed loop: <c>concurrency</c> clients, each sending its next request when the previous one is answered,
/// until <c>total</c> requests have been sent; images are taken round-robin. Latency is measured per request.
/// </summary>
public static class LoadGenerator
{
    /// <summary>TorchServe's REST API: each image POSTed as the body to <paramref name="path"/>.</summary>
    public static Task<LoadResult> RunAsync(HttpClient http, string path, IReadOnlyList<byte[]> images, int concurrency, int total, int serverPid) =>
        RunAsync(Sender(http, path, images), concurrency, total, serverPid);

    /// <summary>A client of TorchServe's REST API: request i POSTs image i (round-robin) to <paramref name="path"/>.</summary>
    public static Func<int, Task<bool>> Sender(HttpClient http, string path, IReadOnlyList<byte[]> images) => async i =>
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(images[i % images.Count]) };
        return await SendAndDrainAsync(http, request);
    };

    /// <summary>
    /// Sends <paramref name="request"/> and reads the whole answer into a reused buffer, as wrk or hey do. The clients
    /// share the server's cores, so their cost is taken from both servers' throughput: HttpClient's default (buffer the
    /// body, then copy it into a new array) cost two copies and a large-object allocation per 1.3 MB JSON answer.
    /// Answers are checked for agreement before a scenario is timed, not here.
    /// </summary>
    public static async Task<bool> SendAndDrainAsync(HttpClient http, HttpRequestMessage request)
    {
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        await using var body = await response.Content.ReadAsStreamAsync();
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            while (await body.ReadAsync(buffer) > 0)
            {
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
        return response.IsSuccessStatusCode;
    }

    /// <summary>Any client: <paramref name="send"/> sends request i, reads the whole answer and says whether it succeeded.</summary>
    public static async Task<LoadResult> RunAsync(Func<int, Task<bool>> send, int concurrency, int total, int serverPid)
    {
        ResetPeakRss(serverPid);
        var latencies = new double[total];
        var failures = 0;
        var next = -1;
        var clock = Stopwatch.StartNew();
        var clients = Enumerable.Range(0, concurrency).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < total)
            {
                var started = Stopwatch.GetTimestamp();
                var ok = await send(i);
                latencies[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                if (!ok) Interlocked.Increment(ref failures);
            }
        }).ToArray();
        await Task.WhenAll(clients);
        var seconds = clock.Elapsed.TotalSeconds;
        Array.Sort(latencies);
        return new LoadResult(total, failures, seconds, Percentile(latencies, 0.50), Percentile(latencies, 0.90), Percentile(latencies, 0.99), PeakRss(serverPid), latencies.Average());
    }

    private static double Percentile(double[] sorted, double q) => sorted[(int)Math.Round(q * (sorted.Length - 1))];

    /// <summary>
    /// Linux keeps each process's resident-set high-water mark (VmHWM); writing 5 to clear_refs starts it afresh.
    /// A server's figure is the sum over its process tree (the peer's workers are processes, as TorchServe's are).
    /// </summary>
    private static void ResetPeakRss(int pid)
    {
        foreach (var p in ProcessTree(pid))
        {
            try
            {
                File.WriteAllText($"/proc/{p}/clear_refs", "5");
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
    }

    public static long PeakRss(int pid)
    {
        long total = 0;
        foreach (var p in ProcessTree(pid))
        {
            try
            {
                foreach (var line in File.ReadLines($"/proc/{p}/status"))
                {
                    if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                        total += long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
                }
            }
            catch (IOException)
            {
                // the process ended between listing and reading
            }
        }
        return total;
    }

    private static List<int> ProcessTree(int pid)
    {
        var all = new List<int> { pid };
        for (var i = 0; i < all.Count; i++)
        {
            try
            {
                foreach (var task in Directory.GetDirectories($"/proc/{all[i]}/task"))
                {
                    foreach (var child in File.ReadAllText(Path.Combine(task, "children")).Split(' ', StringSplitOptions.RemoveEmptyEntries))
                        all.Add(int.Parse(child));
                }
            }
            catch (IOException)
            {
            }
        }
        return all;
    }
}
