using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ServeSharp.Archive;
using ServeSharp.Bench;

// tools/bench: one command, both servers, the same weights, alternating scenarios, one markdown table.
//   dotnet run --project tools/bench/ServeSharp.Bench -c Release [-- --quick] [-- --only mobilenet,resnet,slide,peak,batching,isolation,protocols]
// (--no-peer: ServeSharp's rows only, for quick before/after comparisons while working on it; SERVESHARP_BENCH_SERVER=DLL
//  measures another build of the server; --only package with SERVESHARP_BENCH_CPU_SERVER=DLL compares CPU inference through
//  the default build's GPU ONNX Runtime package with a -p:ServeSharpCpuOnly=true build)
var quick = args.Contains("--quick");
var noPeer = args.Contains("--no-peer");
string[] all = ["mobilenet", "resnet", "slide", "batching", "isolation", "protocols", "peak"];
var only = args.SkipWhile(a => a != "--only").Skip(1).FirstOrDefault()?.Split(',') ?? all;
var root = FindRoot();
var work = Directory.CreateDirectory(Path.Combine(root, "bench", "out")).FullName;
var store = Directory.CreateDirectory(Path.Combine(work, "model-store")).FullName;
var log = new StringBuilder();
void Say(string line)
{
    Console.WriteLine(line);
    log.AppendLine(line);
}

// 1. Models (seeded random init; torch weights kept for the peer), archives, and real JPEG photographs.
var mobilenet = Export("deeplabv3_mobilenet_v3_large");
var resnet = Export("deeplabv3_resnet50");
var photos = Path.Combine(work, "photos");
Python("tools/bench/photos.py", photos);
var images = Directory.GetFiles(photos, "*.jpg").Where(f => !f.EndsWith("large.jpg", StringComparison.Ordinal)).Order().Select(File.ReadAllBytes).ToList();
var large = File.ReadAllBytes(Path.Combine(photos, "large.jpg"));
var rows = new List<string>();
var cores = Environment.ProcessorCount;

// Every contender is a fresh server process holding only its model, so its peak RSS is that model's.
// The peer runs the ways a TorchServe user could set it up on this machine: one worker with every core, a worker
// per core with one thread each, and TorchServe's default (a worker per core, torch using every core in each);
// ServeSharp is compared with the best of them.
Contender Ours(string label, string name, string path) => new($"ServeSharp ({label})", () => BenchServer.StartServeSharpAsync(Directory.CreateDirectory(Path.Combine(work, "server-" + name)).FullName, store, [$"{name}={name}.mar"]), path);
Contender Peer(string state, int workers, int threads, string path) => new($"peer ({workers} × {threads} threads)", () => BenchServer.StartPeerAsync(root, state, workers, threads), path);

if (only.Contains("mobilenet"))
{
    const string torchserve = "  mode: torchserve\n";
    Archive("mnv3", mobilenet.Onnx, "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\n", torchserve);
    Archive("mnv3w", mobilenet.Onnx, $"minWorkers: {cores}\nmaxWorkers: {cores}\nbatchSize: 1\n", torchserve);
    Archive("mnv3b", mobilenet.Onnx, "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 8\nmaxBatchDelay: 10\n", torchserve);
    var ours1 = Ours("1 worker × 2 threads", "mnv3", "/predictions/mnv3");
    var oursW = Ours($"{cores} workers × 1 thread", "mnv3w", "/predictions/mnv3w");
    var oursB = Ours("1 worker × 2 threads, batching 8 / 10 ms", "mnv3b", "/predictions/mnv3b");
    var peer1 = Peer(mobilenet.State, 1, cores, "/predictions/mnv3");
    var peerW = Peer(mobilenet.State, cores, 1, "/predictions/mnv3");
    var peerD = Peer(mobilenet.State, cores, cores, "/predictions/mnv3");
    await Agreement("deeplabv3_mobilenet_v3_large torchserve mode", ours1 with { Path = "/predictions/mnv3?output=torchserve" }, peer1);
    var n = quick ? 24 : 64;
    const string title = "deeplabv3_mobilenet_v3_large, torchserve mode, TorchServe JSON";
    await Scenario(title, 1, n, [ours1, oursW], [peer1, peerW], warm: 40);
    await Scenario(title, 8, n * 2, [ours1, oursW, oursB], [peer1, peerW, peerD], warm: 40);
}

if (only.Contains("resnet"))
{
    const string torchvision = "  mode: torchvision\n  resize_size: 520\n";
    Archive("rn50", resnet.Onnx, "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\nresponseTimeout: 600\n", torchvision);
    Archive("rn50w", resnet.Onnx, $"minWorkers: {cores}\nmaxWorkers: {cores}\nbatchSize: 1\nresponseTimeout: 600\n", torchvision);
    var ours1 = Ours("1 worker × 2 threads", "rn50", "/predictions/rn50?output=mask");
    var oursW = Ours($"{cores} workers × 1 thread", "rn50w", "/predictions/rn50w?output=mask");
    const string peerPath = "/predictions/rn50?mode=torchvision&resize_size=520";
    var peer1 = Peer(resnet.State, 1, cores, peerPath);
    var peerW = Peer(resnet.State, cores, 1, peerPath);
    var peerD = Peer(resnet.State, cores, cores, peerPath);
    await Agreement("deeplabv3_resnet50 torchserve mode", ours1 with { Path = "/predictions/rn50?output=torchserve&mode=torchserve" }, peer1 with { Path = "/predictions/rn50" });
    var n = quick ? 3 : 6;
    const string title = "deeplabv3_resnet50, torchvision mode 520 (ServeSharp: mask PNG; peer: JSON)";
    await Scenario(title, 1, n, [ours1], [peer1]);
    await Scenario(title, 8, n * 2, [ours1, oursW], [peer1, peerW, peerD]);
}

// One aggregator per model: with 2 workers, batchSize 8 and maxBatchDelay 10 ms, how full are the batches it forms?
if (only.Contains("batching"))
{
    Archive("mnv3b2", mobilenet.Onnx, "minWorkers: 2\nmaxWorkers: 2\nbatchSize: 8\nmaxBatchDelay: 10\n", "  mode: torchserve\n");
    var batching = Ours("2 workers × 1 thread, batching 8 / 10 ms", "mnv3b2", "/predictions/mnv3b2");
    const string title = "deeplabv3_mobilenet_v3_large, torchserve mode, TorchServe JSON, 2 workers batching 8 / 10 ms";
    int[] clientCounts = [8, 16];
    foreach (var clients in clientCounts)
    {
        using var server = await batching.Start();
        await Warm(server, batching.Path, images, 40);
        var before = await server.BatchSizesAsync();
        var r = await LoadGenerator.RunAsync(server.Http, batching.Path, images, clients, quick ? 48 : 160, server.Pid);
        var after = await server.BatchSizesAsync();
        rows.Add(Row(title, clients, batching.Label, r, null));
        Say($"{title} c={clients}: {r.Throughput:F2} req/s, p99 {r.P99:F0} ms; batch sizes {Distribution(before, after)}");
    }
}

// Worker isolation: the same built-in handler in the server's process and in a worker process of its own, measured
// alternately (three rounds each: one pair of rows varies by ±5 % on this machine), so the socket hop's cost is a
// ratio taken on one machine in one run.
if (only.Contains("isolation"))
{
    const string config = "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\n";
    Archive("mnv3i", mobilenet.Onnx, config + "workerIsolation: in-process\n", "  mode: torchserve\n");
    Archive("mnv3p", mobilenet.Onnx, config + "workerIsolation: process\n", "  mode: torchserve\n");
    var inProcess = Ours("1 worker × 2 threads, in-process", "mnv3i", "/predictions/mnv3i");
    var process = Ours("1 worker × 2 threads, worker process", "mnv3p", "/predictions/mnv3p");
    const string title = "deeplabv3_mobilenet_v3_large, torchserve mode, TorchServe JSON: worker isolation";
    var n = quick ? 48 : 160;
    var results = new List<(Contender Who, LoadResult Result)>();
    for (var round = 0; round < 3; round++)
    {
        foreach (var who in new[] { inProcess, process }) results.Add((who, await Measure(who, 8, n, 40)));
    }
    foreach (var (who, r) in results) rows.Add(Row(title, 8, who.Label, r, null));
    double Mean(Contender who) => results.Where(r => r.Who == who).Average(r => r.Result.Throughput);
    var rounds = string.Join(", ", results.Chunk(2).Select(pair => (pair[1].Result.Throughput / pair[0].Result.Throughput).ToString("P1", CultureInfo.InvariantCulture)));
    Say(string.Create(CultureInfo.InvariantCulture,
        $"{title} c=8: in-process {Mean(inProcess):F2} req/s, worker process {Mean(process):F2} req/s ({Mean(process) / Mean(inProcess):P1} of in-process; by round {rounds}; peak RSS counts the server and its worker process together)"));
}

// The default build carries ONNX Runtime's GPU package; its CPU sessions should be as fast as the CPU package's.
// Same code, same model, same threads, measured alternately in one run (three rounds).
if (only.Contains("package"))
{
    var cpuOnly = Environment.GetEnvironmentVariable("SERVESHARP_BENCH_CPU_SERVER") is { Length: > 0 } dll ? dll
        : throw new InvalidOperationException("--only package needs SERVESHARP_BENCH_CPU_SERVER=<servesharp.dll of a -p:ServeSharpCpuOnly=true build>");
    Archive("pk_mnv3", mobilenet.Onnx, "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\n", "  mode: torchserve\n");
    Archive("pk_rn50", resnet.Onnx, "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\nresponseTimeout: 600\n", "  mode: torchvision\n  resize_size: 520\n");
    Contender With(string package, string name, string path, string? serverDll) => new($"ServeSharp (1 worker × 2 threads, {package})",
        () => BenchServer.StartServeSharpAsync(Directory.CreateDirectory(Path.Combine(work, "server-" + name)).FullName, store, [$"{name}={name}.mar"], serverDll), path);
    (string Title, string Name, string Path, int Clients, int N)[] cases =
    [
        ("deeplabv3_mobilenet_v3_large, torchserve mode, TorchServe JSON: ONNX Runtime package", "pk_mnv3", "/predictions/pk_mnv3", 1, quick ? 24 : 64),
        ("deeplabv3_mobilenet_v3_large, torchserve mode, TorchServe JSON: ONNX Runtime package", "pk_mnv3", "/predictions/pk_mnv3", 8, quick ? 48 : 128),
        ("deeplabv3_resnet50, torchvision mode 520, mask PNG: ONNX Runtime package", "pk_rn50", "/predictions/pk_rn50?output=mask", 1, quick ? 3 : 6),
    ];
    foreach (var (caseTitle, name, path, clients, n) in cases)
    {
        var gpuPackage = With("Microsoft.ML.OnnxRuntime.Gpu 1.31.0, CPU session", name, path, null);
        var cpuPackage = With("Microsoft.ML.OnnxRuntime 1.31.1", name, path, cpuOnly);
        var results = new List<(Contender Who, LoadResult Result)>();
        for (var round = 0; round < 3; round++)
        {
            foreach (var who in new[] { gpuPackage, cpuPackage }) results.Add((who, await Measure(who, clients, n, name == "pk_rn50" ? 0 : 40)));
        }
        foreach (var (who, r) in results) rows.Add(Row(caseTitle, clients, who.Label, r, null));
        double Mean(Contender who) => results.Where(r => r.Who == who).Average(r => r.Result.Throughput);
        var rounds = string.Join(", ", results.Chunk(2).Select(pair => (pair[0].Result.Throughput / pair[1].Result.Throughput).ToString("P1", CultureInfo.InvariantCulture)));
        Say(string.Create(CultureInfo.InvariantCulture,
            $"{caseTitle} c={clients}: GPU package {Mean(gpuPackage):F2} req/s, CPU package {Mean(cpuPackage):F2} req/s ({Mean(gpuPackage) / Mean(cpuPackage):P1}; by round {rounds})"));
    }
}

// The protocols on one server and one model, measured alternately (three rounds): TorchServe's REST and gRPC APIs (its
// JSON; REST also with the class map as a PNG), and OIP v2 over REST with binary tensors and over gRPC (the class map as
// raw bytes). Same handler, same queue.
if (only.Contains("protocols"))
{
    Archive("mnv3pr", mobilenet.Onnx, "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\n", "  mode: torchserve\n");
    var who = Ours("1 worker × 2 threads", "mnv3pr", "/predictions/mnv3pr");
    using var server = await who.Start();
    await Warm(server, who.Path, images, 40);
    using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"http://127.0.0.1:{server.GrpcInferencePort}");
    (string Label, Func<int, Task<bool>> Send)[] clients =
    [
        ("TorchServe REST, TorchServe JSON", LoadGenerator.Sender(server.Http, "/predictions/mnv3pr", images)),
        ("TorchServe gRPC Predictions, TorchServe JSON", ProtocolClients.TorchServeGrpc(channel, "mnv3pr", images)),
        ("TorchServe REST, class map PNG (output=mask)", LoadGenerator.Sender(server.Http, "/predictions/mnv3pr?output=mask", images)),
        ("OIP v2 REST, binary tensors (classes UINT8)", ProtocolClients.OipBinary(server.Http, "mnv3pr", images)),
        ("OIP v2 gRPC ModelInfer, raw tensors (classes UINT8)", ProtocolClients.OipGrpc(channel, "mnv3pr", images)),
    ];
    const string title = "deeplabv3_mobilenet_v3_large 224, torchserve mode: protocols";
    var n = quick ? 48 : 160;
    foreach (var concurrency in (int[])[1, 8])
    {
        var results = new List<(string Label, LoadResult Result)>();
        for (var round = 0; round < 3; round++)
        {
            foreach (var (label, send) in clients)
            {
                await LoadGenerator.RunAsync(send, cores, cores * 4, server.Pid); // this client's paths warmed too
                results.Add((label, await LoadGenerator.RunAsync(send, concurrency, concurrency == 1 ? n / 2 : n, server.Pid)));
            }
        }
        foreach (var (label, r) in results) rows.Add(Row(title, concurrency, $"ServeSharp, {label}", r, null));
        foreach (var (label, _) in clients)
        {
            var mine = results.Where(r => r.Label == label).Select(r => r.Result).ToList();
            Say(string.Create(CultureInfo.InvariantCulture, $"{title} c={concurrency} {label}: {mine.Average(r => r.Throughput):F2} req/s, p99 {mine.Average(r => r.P99):F0} ms (mean of 3 rounds)"));
        }
    }
}

if (only.Contains("slide"))
{
    Archive("slide", mobilenet.Onnx, "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\nresponseTimeout: 600\n", "  mode: original\n");
    var slide = Ours("1 worker × 2 threads", "slide", "/predictions/slide?crop_size=512,512&stride=384,384&output=summary");
    using var server = await slide.Start();
    await Warm(server, slide.Path, [large]);
    var r = await LoadGenerator.RunAsync(server.Http, slide.Path, [large], 1, quick ? 1 : 3, server.Pid);
    rows.Add(Row("deeplabv3_mobilenet_v3_large, 2400×1600 JPEG, sliding windows 512/384, summary", 1, slide.Label, r, null));
}

// 2. The machine's peak (the best of ONNX Runtime MatMul and convolution kernels) and the model's compute rate.
if (only.Contains("peak"))
{
    var peak = Peak.Measure(work, Python);
    foreach (var (kernel, rate) in peak.Kernels) Say($"ONNX Runtime {kernel}, {cores} threads: {rate:F1} GFLOP/s");
    var (gflop, seconds) = Peak.ModelRate(resnet.Onnx, resnet.State, 520, 780, Python);
    var modelRate = gflop / seconds;
    Say($"deeplabv3_resnet50 at 520×780: {gflop:F1} GFLOP in {seconds * 1000:F0} ms = {modelRate:F1} GFLOP/s, {modelRate / peak.Best:P0} of the measured peak ({peak.Best:F1} GFLOP/s)");
}

if (only.Contains("int8")) await Int8Scenario.RunAsync(root, work, store, photos, cores, quick, Say, (t, c, s, r, p) => rows.Add(Row(t, c, s, r, p)));

WriteResults();
return 0;

async Task Scenario(string title, int clients, int total, Contender[] ours, Contender[] peers, int warm = 0)
{
    if (noPeer) peers = [];
    // Alternate: ours, peer, ours, peer, ... so slow drifts of the machine touch both sides alike.
    var results = new List<(Contender Who, LoadResult Result, bool Ours)>();
    for (var i = 0; i < Math.Max(ours.Length, peers.Length); i++)
    {
        if (i < ours.Length) results.Add((ours[i], await Measure(ours[i], clients, total, warm), true));
        if (i < peers.Length) results.Add((peers[i], await Measure(peers[i], clients, total, warm), false));
    }
    // Compared with the peer at its best on each count: its highest throughput and its lowest p99.
    var peerResults = results.Where(r => !r.Ours).Select(r => r.Result).ToList();
    var best = peerResults.Count == 0 ? null : peerResults.MaxBy(r => r.Throughput)! with { P99 = peerResults.Min(r => r.P99) };
    foreach (var r in results.OrderBy(r => !r.Ours))
    {
        rows.Add(Row(title, clients, r.Who.Label, r.Result, r.Ours ? best : null));
        Say($"{title} c={clients} {r.Who.Label}: {r.Result.Throughput:F2} req/s, p99 {r.Result.P99:F0} ms");
    }
}

async Task<LoadResult> Measure(Contender who, int clients, int total, int warm)
{
    using var server = await who.Start();
    await Warm(server, who.Path, images, warm);
    return await LoadGenerator.RunAsync(server.Http, who.Path, images, clients, total, server.Pid);
}

// "size×batches, …, mean m" over the measured window, or n/a when the server does not report batch sizes.
static string Distribution(SortedDictionary<int, long>? before, SortedDictionary<int, long>? after)
{
    if (before is null || after is null) return "n/a (the server reports no ts_batch_size)";
    var sizes = after.Select(kv => (Size: kv.Key, Count: kv.Value - before.GetValueOrDefault(kv.Key))).Where(s => s.Count > 0).ToList();
    long batches = sizes.Sum(s => s.Count), requests = sizes.Sum(s => (long)s.Size * s.Count);
    var parts = string.Join(", ", sizes.Select(s => string.Create(CultureInfo.InvariantCulture, $"{(s.Size == int.MaxValue ? ">64" : s.Size.ToString(CultureInfo.InvariantCulture))}×{s.Count}")));
    return string.Create(CultureInfo.InvariantCulture, $"{parts} (size×batches; {batches} batches, mean {(batches == 0 ? 0 : (double)requests / batches):F2})");
}

string Row(string scenario, int clients, string server, LoadResult r, LoadResult? peer) =>
    string.Create(CultureInfo.InvariantCulture,
        $"| {scenario} | {clients} | {server} | {r.Throughput:F2} | {r.P50:F0} | {r.P90:F0} | {r.P99:F0} | {r.PeakRssBytes / 1048576.0:F0} | {(peer is null ? "" : $"{r.Throughput / peer.Throughput:F2}× / {r.P99 / peer.P99:F2}×")} | {r.Failures} |");

// Every worker sees every image (the first run of a shape plans its kernels), and fast models run until the JIT has
// settled (.NET tiers hot methods up over their first few dozen calls).
async Task Warm(BenchServer server, string path, IReadOnlyList<byte[]> set, int minimum = 0) =>
    await LoadGenerator.RunAsync(server.Http, path, set, cores, Math.Max(minimum, set.Count * cores), server.Pid);

async Task Agreement(string title, Contender ours, Contender peer)
{
    using var a = await ours.Start();
    using var b = await peer.Start();
    long same = 0, total = 0;
    foreach (var image in images)
    {
        var x = Classes(await (await a.Http.PostAsync(ours.Path, new ByteArrayContent(image))).Content.ReadAsStringAsync());
        var y = Classes(await (await b.Http.PostAsync(peer.Path, new ByteArrayContent(image))).Content.ReadAsStringAsync());
        for (var i = 0; i < Math.Min(x.Count, y.Count); i++) same += x[i] == y[i] ? 1 : 0;
        total += Math.Max(x.Count, y.Count);
    }
    Say($"{title}: class agreement ServeSharp vs peer {(double)same / total:P2} over {total} pixels");
}

static List<int> Classes(string json)
{
    using var doc = JsonDocument.Parse(json);
    var result = new List<int>();
    foreach (var row in doc.RootElement.EnumerateArray())
        foreach (var px in row.EnumerateArray()) result.Add((int)px[0].GetDouble());
    return result;
}

(string Onnx, string State) Export(string arch)
{
    var onnx = Path.Combine(work, arch + ".onnx");
    var state = Path.Combine(work, arch + ".pt");
    if (!File.Exists(onnx) || !File.Exists(state))
        Python("tools/models/export_segmentation.py", "--arch", arch, "--num-classes", "21", "--seed", "0", "--out", onnx, "--save-state", state);
    return (onnx, state);
}

void Archive(string name, string onnx, string config, string handler)
{
    var yaml = Path.Combine(work, name + "-config.yaml");
    File.WriteAllText(yaml, $"{config}handler:\n{handler}");
    ArchiveWriter.Write(new ArchiveSpec { ModelName = name, Handler = "image_segmenter", SerializedFile = onnx, ConfigFile = yaml, ExportPath = store, Force = true });
}

// Runs a tools/ script with Debian's Python (the one that sees torch); its standard output is returned.
string Python(string script, params string[] arguments)
{
    var info = new ProcessStartInfo("/usr/bin/python3") { WorkingDirectory = root, RedirectStandardOutput = true };
    info.ArgumentList.Add(Path.Combine(root, script));
    foreach (var a in arguments) info.ArgumentList.Add(a);
    using var p = Process.Start(info)!;
    var output = p.StandardOutput.ReadToEnd();
    p.WaitForExit();
    if (p.ExitCode != 0) throw new InvalidOperationException($"{script} failed ({p.ExitCode})");
    return output;
}

void WriteResults()
{
    var cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?";
    string[] simdFlags = ["avx2", "fma", "avx512f"];
    var simd = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal)) is { } flags
        ? string.Join(" ", simdFlags.Where(f => flags.Split(' ').Contains(f))) : "?";
    var md = new StringBuilder();
    md.AppendLine("# Benchmark results");
    md.AppendLine();
    md.AppendLine($"Written by `dotnet run --project tools/bench/ServeSharp.Bench -c Release{(args.Length > 0 ? " -- " + string.Join(' ', args) : "")}` on {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC.");
    md.AppendLine($"Machine: {cpu} ({simd}), {cores} cores, {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 1073741824.0:F0} GiB; .NET {Environment.Version}; ONNX Runtime {typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetName().Version}; the peer runs Debian's PyTorch/torchvision.");
    md.AppendLine("Both servers serve the same weights (seeded random init). Each row is a fresh server process holding only that model; closed-loop clients on loopback, JPEG photographs of four sizes, every worker warmed first. The ratio column compares with the peer at its best in the same scenario: its highest throughput and its lowest p99 over its configurations.");
    md.AppendLine();
    md.AppendLine("| scenario | clients | server | req/s | p50 ms | p90 ms | p99 ms | peak RSS MiB | ServeSharp / best peer (throughput / p99) | failures |");
    md.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
    foreach (var row in rows) md.AppendLine(row);
    md.AppendLine();
    foreach (var line in log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries)) md.AppendLine($"- {line}");
    var path = Path.Combine(root, "bench", all.All(only.Contains) ? "RESULTS.md" : "RESULTS-partial.md");
    File.WriteAllText(path, md.ToString());
    Console.WriteLine($"wrote {path}");
}

static string FindRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "ServeSharp.sln"))) return dir.FullName;
    throw new InvalidOperationException("run from inside the repository");
}

/// <summary>One server set-up in a scenario: how to start it and which path to load.</summary>
internal sealed record Contender(string Label, Func<Task<BenchServer>> Start, string Path);
