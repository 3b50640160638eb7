using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ServeSharp.Archive;
using ServeSharp.Bench;

// tools/bench: one command, both servers, the same weights, alternating scenarios, one markdown table.
//   dotnet run --project tools/bench/ServeSharp.Bench -c Release [-- --quick] [-- --only mobilenet,resnet,scaling,memory,slide,peak,batching,isolation,protocols]
// (--no-peer: ServeSharp's rows only, for quick before/after comparisons while working on it; SERVESHARP_BENCH_SERVER=DLL
//  measures another build of the server; --only package with SERVESHARP_BENCH_CPU_SERVER=DLL compares CPU inference through
//  the default build's GPU ONNX Runtime package with a -p:ServeSharpCpuOnly=true build; SERVESHARP_BENCH_HANDLER="  key: value\n"
//  adds handler keys to ServeSharp's mobilenet archives, for A/B runs of an option such as overlap_postprocess)
var quick = args.Contains("--quick");
var noPeer = args.Contains("--no-peer");
string[] all = ["mobilenet", "resnet", "scaling", "memory", "slide", "batching", "isolation", "protocols", "peak"];
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

// 1. Models (seeded, fitted briefly on photographs; torch weights kept for the peer), archives, and real JPEG photographs.
// Fitted briefly on photographs (tools/models/fit.py): a random-init DeepLab answers one class for every pixel, which
// made the class-agreement check pass trivially and every mask compress to nothing.
var mobilenet = Export("deeplabv3_mobilenet_v3_large", fitSteps: 150);
var resnet = Export("deeplabv3_resnet50", fitSteps: 40);
var photos = Path.Combine(work, "photos");
Python("tools/bench/photos.py", photos);
var images = Directory.GetFiles(photos, "*.jpg").Where(f => !f.EndsWith("large.jpg", StringComparison.Ordinal)).Order().Select(File.ReadAllBytes).ToList();
var large = File.ReadAllBytes(Path.Combine(photos, "large.jpg"));
var rows = new List<string>();
var sections = new StringBuilder(); // the per-request breakdown tables, after the rows
var cores = Environment.ProcessorCount;
var cpu = CpuInfo.ThisMachine();
var bareRates = new Dictionary<string, BareRate>();
var stageMetricMissing = false;
Say($"Machine: {cpu}");

// Every contender is a fresh server process holding only its model, so its peak RSS is that model's.
// The peer runs the ways a TorchServe user could set it up on this machine: one worker with every core, a worker
// per core with one thread each, and TorchServe's default (a worker per core, torch using every core in each);
// ServeSharp is compared with the best of them.
// Each ServeSharp contender carries its bare twin (same ONNX file, batch size, workers and threads: the server plans
// cores / workers intra-op threads per worker) for the efficiency column.
Contender Ours(string label, string name, string path, int workers = 1, BareSpec? bare = null) =>
    new($"ServeSharp ({label})", () => BenchServer.StartServeSharpAsync(Directory.CreateDirectory(Path.Combine(work, "server-" + name)).FullName, store, [$"{name}={name}.mar"]), path, workers, bare, name);
Contender Peer(string state, int workers, int threads, string path) => new($"peer ({workers} × {threads} threads)", () => BenchServer.StartPeerAsync(root, state, workers, threads), path, workers);
BareSpec Twin(string onnx, IReadOnlyList<int[]> shapes, int workers, int batchSize = 1, bool shared = false) => new(onnx, shapes, batchSize, workers, Math.Max(1, cores / workers), shared);

// The mobilenet contenders serve the mobilenet scenario and the scaling one (at the best configuration found here).
const string mobilenetTitle = "deeplabv3_mobilenet_v3_large, torchserve mode, TorchServe JSON";
Contender? oursBest = null, peerBest = null;
Contender ours1 = null!, oursW = null!, oursB = null!, oursD = null!, peer1 = null!, peerW = null!, peerD = null!;
if (only.Contains("mobilenet") || only.Contains("scaling"))
{
    var torchserve = "  mode: torchserve\n" + Environment.GetEnvironmentVariable("SERVESHARP_BENCH_HANDLER");
    Archive("mnv3", mobilenet.Onnx, "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\n", torchserve);
    Archive("mnv3w", mobilenet.Onnx, $"minWorkers: {cores}\nmaxWorkers: {cores}\nbatchSize: 1\n", torchserve);
    Archive("mnv3b", mobilenet.Onnx, "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 8\nmaxBatchDelay: 10\n", torchserve);
    // A worker per core with every core in each (the peer's TorchServe default): while one worker decodes, resizes and
    // writes JSON, the other's inference has both cores.
    Archive("mnv3d", mobilenet.Onnx, $"minWorkers: {cores}\nmaxWorkers: {cores}\nbatchSize: 1\n", $"{torchserve}  intra_op_threads: {cores}\n");
    ours1 = Ours($"1 worker × {cores} threads", "mnv3", "/predictions/mnv3", 1, Twin(mobilenet.Onnx, InputShapes.TorchServe, 1));
    oursW = Ours($"{cores} workers × 1 thread", "mnv3w", "/predictions/mnv3w", cores, Twin(mobilenet.Onnx, InputShapes.TorchServe, cores));
    oursD = Ours($"{cores} workers × {cores} threads", "mnv3d", "/predictions/mnv3d", cores, new BareSpec(mobilenet.Onnx, InputShapes.TorchServe, 1, cores, cores, false));
    oursB = Ours($"1 worker × {cores} threads, batching 8 / 10 ms", "mnv3b", "/predictions/mnv3b", 1, Twin(mobilenet.Onnx, InputShapes.TorchServe, 1, batchSize: 8));
    peer1 = Peer(mobilenet.State, 1, cores, "/predictions/mnv3");
    peerW = Peer(mobilenet.State, cores, 1, "/predictions/mnv3");
    peerD = Peer(mobilenet.State, cores, cores, "/predictions/mnv3");
}

if (only.Contains("mobilenet"))
{
    if (!noPeer) await Agreement("deeplabv3_mobilenet_v3_large torchserve mode", ours1 with { Path = "/predictions/mnv3?output=torchserve" }, peer1);
    var n = quick ? 24 : 64;
    // 80 warm-up requests: with two workers, the first ~60 still pay a warm-up (bench/RESULTS.md, 2026-12-03).
    var one = await Scenario(mobilenetTitle, 1, n, [ours1, oursW], [peer1, peerW], warm: 80);
    var eight = await Scenario(mobilenetTitle, 8, n * 2, [ours1, oursW, oursD, oursB], [peer1, peerW, peerD], warm: 80);
    Say(Efficiency.Goal($"{mobilenetTitle} c=1, best ServeSharp row", one.Where(r => r.Ours).Max(r => r.Efficiency), 0.80));
    Say(Efficiency.Goal($"{mobilenetTitle} c=8, best ServeSharp row", eight.Where(r => r.Ours).Max(r => r.Efficiency), 0.80));
    // The scaling scenario runs each server at its best configuration here: its highest throughput with 8 clients.
    oursBest = eight.Where(r => r.Ours).MaxBy(r => r.Result.Throughput)?.Who;
    peerBest = eight.Where(r => !r.Ours).MaxBy(r => r.Result.Throughput)?.Who;
}

// Equal work: both servers answer TorchServe's JSON (at the photograph's size: logits resized, softmax, max, per-pixel
// pairs), then both answer the class map as an 8-bit PNG (the peer with the few lines a TorchServe user adds to postprocess).
if (only.Contains("resnet"))
{
    const string torchvision = "  mode: torchvision\n  resize_size: 520\n";
    Archive("rn50", resnet.Onnx, "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\nresponseTimeout: 600\n", torchvision);
    Archive("rn50w", resnet.Onnx, $"minWorkers: {cores}\nmaxWorkers: {cores}\nbatchSize: 1\nresponseTimeout: 600\n", torchvision);
    var shapes = InputShapes.Torchvision(images, 520);
    const string peerPath = "/predictions/rn50?mode=torchvision&resize_size=520";
    var n = quick ? 3 : 6;
    (string Output, string Ours, string Peer, double Goal)[] outputs = [("TorchServe JSON", "output=torchserve", "", 0.0), ("mask PNG", "output=mask", "&output=mask", 0.90)];
    foreach (var (output, oursQuery, peerQuery, goal) in outputs)
    {
        var rn1 = Ours($"1 worker × {cores} threads", "rn50", "/predictions/rn50?" + oursQuery, 1, Twin(resnet.Onnx, shapes, 1));
        var rnW = Ours($"{cores} workers × 1 thread", "rn50w", "/predictions/rn50w?" + oursQuery, cores, Twin(resnet.Onnx, shapes, cores));
        var rnPeer1 = Peer(resnet.State, 1, cores, peerPath + peerQuery);
        var rnPeerW = Peer(resnet.State, cores, 1, peerPath + peerQuery);
        var rnPeerD = Peer(resnet.State, cores, cores, peerPath + peerQuery);
        if (!noPeer) await Agreement($"deeplabv3_resnet50 torchvision mode 520, {output}", rn1, rnPeer1);
        var title = $"deeplabv3_resnet50, torchvision mode 520, {output} (both servers)";
        var one = await Scenario(title, 1, n, [rn1], [rnPeer1]);
        var eight = await Scenario(title, 8, n * 2, [rn1, rnW], [rnPeer1, rnPeerW, rnPeerD]);
        if (goal > 0)
        {
            Say(Efficiency.Goal($"{title} c=1, best ServeSharp row", one.Where(r => r.Ours).Max(r => r.Efficiency), goal));
            Say(Efficiency.Goal($"{title} c=8, best ServeSharp row", eight.Where(r => r.Ours).Max(r => r.Efficiency), goal));
        }
    }
    if (!noPeer)
        await Agreement("deeplabv3_resnet50 torchserve mode", Ours("", "rn50", "/predictions/rn50?output=torchserve&mode=torchserve"), Peer(resnet.State, 1, cores, "/predictions/rn50"));
}

// Throughput and latency as the load grows, each server at its best configuration, and the plot of it.
if (only.Contains("scaling"))
{
    int[] steps = [1, 2, 4, 8, 16, 32];
    var chosen = oursBest is null ? " (not measured in this run: add mobilenet to --only to choose by measurement)" : " (best with 8 clients in the mobilenet scenario)";
    var contenders = new List<(Contender Who, bool Ours)> { (oursBest ?? oursW, true) };
    if (!noPeer) contenders.Add((peerBest ?? peer1, false));
    Say($"scaling: {contenders[0].Who.Label}{(contenders.Count > 1 ? $" and {contenders[1].Who.Label}" : "")}{chosen}");
    var results = new List<(Contender Who, bool Ours, int Clients, LoadResult Result)>();
    foreach (var (who, isOurs) in contenders)
    {
        using var server = await who.Start();
        await Warm(server, who.Path, images, 40);
        foreach (var clients in steps)
            results.Add((who, isOurs, clients, await LoadGenerator.RunAsync(server.Http, who.Path, images, clients, Math.Max(quick ? 16 : 48, clients * (quick ? 2 : 4)), server.Pid)));
    }
    const string title = mobilenetTitle + ": scaling";
    foreach (var (who, isOurs, clients, r) in results)
    {
        var peer = results.FirstOrDefault(p => !p.Ours && p.Clients == clients).Result;
        var efficiency = isOurs ? Efficiency.Of(r.Throughput, Bare(who.Bare)) : null;
        rows.Add(Row(title, clients, who.Label, r, isOurs ? peer : null, who.Workers, efficiency));
        Say(string.Create(CultureInfo.InvariantCulture, $"{title} c={clients} {who.Label}: {r.Throughput:F2} req/s, p50 {r.P50:F0} ms, p99 {r.P99:F0} ms"));
    }
    var plot = Path.Combine(root, "bench", "latency-vs-load.png");
    LatencyPlot.Write(plot, $"{mobilenetTitle}: latency vs load, clients {string.Join(", ", steps)} ({cores} cores)",
        results.Select(r => new LoadPoint(r.Ours ? "ServeSharp" : "peer", r.Clients, r.Result.Throughput, r.Result.P50, r.Result.P99)).ToList());
    Say($"scaling: wrote {Path.GetRelativePath(root, plot)}");
}

// Memory: 2 workers with an InferenceSession each, against 2 workers sharing one (model-config.yaml sharedSession: true,
// ServeSharp's own key). A build that does not know the key warns "unknown key" and gives each worker its own session.
if (only.Contains("memory"))
{
    const string config = "minWorkers: 2\nmaxWorkers: 2\nbatchSize: 1\n";
    Archive("mnv3m", mobilenet.Onnx, config, "  mode: torchserve\n");
    Archive("mnv3ms", mobilenet.Onnx, config + "sharedSession: true\n", "  mode: torchserve\n");
    var each = Ours("2 workers, a session each", "mnv3m", "/predictions/mnv3m", 2, Twin(mobilenet.Onnx, InputShapes.TorchServe, 2));
    var shared = Ours("2 workers, one shared session (sharedSession: true)", "mnv3ms", "/predictions/mnv3ms", 2, Twin(mobilenet.Onnx, InputShapes.TorchServe, 2, shared: true));
    const string title = mobilenetTitle + ": a session per worker or one shared";
    var results = await Scenario(title, 8, quick ? 48 : 128, [each, shared], [], warm: 40);
    var (a, b) = (results[0].Result, results[1].Result);
    Say(string.Create(CultureInfo.InvariantCulture,
        $"{title} c=8: peak RSS {b.PeakRssBytes / 1048576.0:F0} MiB shared ({b.PeakRssBytes / 2097152.0:F0} per worker) against {a.PeakRssBytes / 1048576.0:F0} MiB a session each ({a.PeakRssBytes / 2097152.0:F0} per worker): {(b.PeakRssBytes - a.PeakRssBytes) / 1048576.0:+0;-0} MiB; throughput {b.Throughput / a.Throughput:P1} of a session each"));
    if (ServerSaid("sharedSession")) Say("memory: this server build does not know sharedSession (it logged \"unknown key 'sharedSession'\"): both rows give each worker its own session");
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
        rows.Add(Row(title, clients, batching.Label, r, null, workers: 2));
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

async Task<List<ScenarioResult>> Scenario(string title, int clients, int total, Contender[] ours, Contender[] peers, int warm = 0)
{
    if (noPeer) peers = [];
    // Alternate: ours, peer, ours, peer, ... so slow drifts of the machine touch both sides alike.
    var results = new List<ScenarioResult>();
    for (var i = 0; i < Math.Max(ours.Length, peers.Length); i++)
    {
        if (i < ours.Length) results.Add(new(ours[i], await Measure(ours[i], clients, total, warm, $"{title} c={clients} {ours[i].Label}"), true, null));
        if (i < peers.Length) results.Add(new(peers[i], await Measure(peers[i], clients, total, warm), false, null));
    }
    // The bare model runs with no server up (after the measured rows, so the servers' figures are taken first).
    results = results.ConvertAll(r => r.Ours ? r with { Efficiency = Efficiency.Of(r.Result.Throughput, Bare(r.Who.Bare)) } : r);
    // Compared with the peer at its best on each count: its highest throughput and its lowest p99.
    var peerResults = results.Where(r => !r.Ours).Select(r => r.Result).ToList();
    var best = peerResults.Count == 0 ? null : peerResults.MaxBy(r => r.Throughput)! with { P99 = peerResults.Min(r => r.P99) };
    results = [.. results.OrderBy(r => !r.Ours)];
    foreach (var r in results)
    {
        rows.Add(Row(title, clients, r.Who.Label, r.Result, r.Ours ? best : null, r.Who.Workers, r.Efficiency));
        Say(string.Create(CultureInfo.InvariantCulture,
            $"{title} c={clients} {r.Who.Label}: {r.Result.Throughput:F2} req/s, p99 {r.Result.P99:F0} ms, peak RSS {r.Result.PeakRssBytes / 1048576.0:F0} MiB ({r.Result.PeakRssBytes / 1048576.0 / r.Who.Workers:F0} per worker){(r.Efficiency is { } e ? $", efficiency {e:P1}" : "")}"));
    }
    return results;
}

// breakdownTitle: scrape servesharp_request_stage_seconds before and after the measured part (ServeSharp only).
async Task<LoadResult> Measure(Contender who, int clients, int total, int warm, string? breakdownTitle = null)
{
    using var server = await who.Start();
    await Warm(server, who.Path, images, warm);
    var scrape = breakdownTitle is not null && who.Model is not null && server.MetricsPort is not null;
    var before = scrape ? await StagesAsync(server, who.Model!) : null;
    var result = await LoadGenerator.RunAsync(server.Http, who.Path, images, clients, total, server.Pid);
    var after = scrape && before is not null ? await StagesAsync(server, who.Model!) : null;
    if (scrape && (before is null || after is null))
    {
        if (!stageMetricMissing) Say($"per-request breakdown: the server exports no {StageBreakdown.Metric} on its metrics port; no breakdown tables in this run");
        stageMetricMissing = true;
    }
    else if (before is not null && after is not null)
    {
        var table = StageBreakdown.Table(breakdownTitle!, StageBreakdown.Compute(before, after, result.Mean));
        Console.WriteLine(table);
        sections.AppendLine(table);
    }
    return result;
}

async Task<Dictionary<string, StageTotal>?> StagesAsync(BenchServer server, string model)
{
    try
    {
        return StageBreakdown.Parse(await server.MetricsTextAsync(), model);
    }
    catch (HttpRequestException)
    {
        return null;
    }
}

// The bare model for a ServeSharp contender, once per set-up in a run (same ONNX file, batch, workers, threads).
BareRate? Bare(BareSpec? spec)
{
    if (spec is null) return null;
    if (bareRates.TryGetValue(spec.Key, out var known)) return known;
    var rate = BareModel.Measure(spec, minRunsPerWorker: spec.Shapes.Count * (quick ? 1 : 2), minTime: TimeSpan.FromSeconds(quick ? 2 : 8));
    bareRates[spec.Key] = rate;
    Say(string.Create(CultureInfo.InvariantCulture,
        $"bare {Path.GetFileNameWithoutExtension(spec.Onnx)} {string.Join(", ", spec.Shapes.Select(s => $"{s[2]}×{s[1]}").Distinct())}, batch {spec.BatchSize}, {spec.Workers} × {spec.Threads} threads{(spec.Shared ? ", one shared session" : "")}: {rate.InferencesPerSecond:F2} inferences/s ({rate.Images} in {rate.Seconds:F1} s)"));
    return rate;
}

// Whether a ServeSharp server said "unknown key '<key>'" about its model-config.yaml.
static bool ServerSaid(string key) => BenchServer.ConfigWarnings.Any(l => l.Contains($"unknown key '{key}'", StringComparison.Ordinal));

// "size×batches, …, mean m" over the measured window, or n/a when the server does not report batch sizes.
static string Distribution(SortedDictionary<int, long>? before, SortedDictionary<int, long>? after)
{
    if (before is null || after is null) return "n/a (the server reports no ts_batch_size)";
    var sizes = after.Select(kv => (Size: kv.Key, Count: kv.Value - before.GetValueOrDefault(kv.Key))).Where(s => s.Count > 0).ToList();
    long batches = sizes.Sum(s => s.Count), requests = sizes.Sum(s => (long)s.Size * s.Count);
    var parts = string.Join(", ", sizes.Select(s => string.Create(CultureInfo.InvariantCulture, $"{(s.Size == int.MaxValue ? ">64" : s.Size.ToString(CultureInfo.InvariantCulture))}×{s.Count}")));
    return string.Create(CultureInfo.InvariantCulture, $"{parts} (size×batches; {batches} batches, mean {(batches == 0 ? 0 : (double)requests / batches):F2})");
}

string Row(string scenario, int clients, string server, LoadResult r, LoadResult? peer, int workers = 1, double? efficiency = null) =>
    string.Create(CultureInfo.InvariantCulture,
        $"| {scenario} | {clients} | {server} | {r.Throughput:F2} | {r.P50:F0} | {r.P90:F0} | {r.P99:F0} | {r.PeakRssBytes / 1048576.0:F0} | {r.PeakRssBytes / 1048576.0 / workers:F0} | {Efficiency.Cell(efficiency)} | {(peer is null ? "" : $"{r.Throughput / peer.Throughput:F2}× / {r.P99 / peer.P99:F2}×")} | {r.Failures} |");

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
        var x = Classes(await (await a.Http.PostAsync(ours.Path, new ByteArrayContent(image))).Content.ReadAsByteArrayAsync());
        var y = Classes(await (await b.Http.PostAsync(peer.Path, new ByteArrayContent(image))).Content.ReadAsByteArrayAsync());
        for (var i = 0; i < Math.Min(x.Count, y.Count); i++) same += x[i] == y[i] ? 1 : 0;
        total += Math.Max(x.Count, y.Count);
    }
    Say($"{title}: class agreement ServeSharp vs peer {(double)same / total:P2} over {total} pixels");
}

// The classes of an answer: TorchServe's JSON ([class, probability] per pixel) or an 8-bit PNG mask.
static List<int> Classes(byte[] answer)
{
    if (answer.AsSpan().StartsWith((ReadOnlySpan<byte>)[0x89, (byte)'P', (byte)'N', (byte)'G']))
    {
        using var bitmap = SkiaSharp.SKBitmap.Decode(answer);
        using var gray = new SkiaSharp.SKBitmap(new SkiaSharp.SKImageInfo(bitmap.Width, bitmap.Height, SkiaSharp.SKColorType.Gray8, SkiaSharp.SKAlphaType.Opaque));
        bitmap.CopyTo(gray, SkiaSharp.SKColorType.Gray8);
        var pixels = new List<int>(gray.Width * gray.Height);
        foreach (var b in gray.GetPixelSpan()) pixels.Add(b);
        return pixels;
    }
    using var doc = JsonDocument.Parse(answer);
    var result = new List<int>();
    foreach (var row in doc.RootElement.EnumerateArray())
        foreach (var px in row.EnumerateArray()) result.Add((int)px[0].GetDouble());
    return result;
}

(string Onnx, string State) Export(string arch, int fitSteps)
{
    var onnx = Path.Combine(work, $"{arch}-fit{fitSteps}.onnx");
    var state = Path.Combine(work, $"{arch}-fit{fitSteps}.pt");
    if (!File.Exists(onnx) || !File.Exists(state))
        Python("tools/models/export_segmentation.py", "--arch", arch, "--num-classes", "21", "--seed", "0", "--fit-steps", fitSteps.ToString(CultureInfo.InvariantCulture), "--out", onnx, "--save-state", state);
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
    var md = new StringBuilder();
    md.AppendLine("# Benchmark results");
    md.AppendLine();
    md.AppendLine($"Written by `dotnet run --project tools/bench/ServeSharp.Bench -c Release{(args.Length > 0 ? " -- " + string.Join(' ', args) : "")}` on {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC.");
    md.AppendLine($"Machine: {cpu}, {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 1073741824.0:F0} GiB; .NET {Environment.Version}; ONNX Runtime {typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetName().Version}; the peer runs Debian's PyTorch/torchvision.");
    md.AppendLine("Both servers serve the same weights (seeded, fitted briefly on photographs by tools/models/fit.py, so class agreement means something). Each row is a fresh server process holding only that model; closed-loop clients on loopback, JPEG photographs of four sizes, every worker warmed first. The ratio column compares with the peer at its best in the same scenario: its highest throughput and its lowest p99 over its configurations.");
    md.AppendLine("Peak RSS is the server's process tree; per worker is that divided by the workers (the peer's workers are processes, ServeSharp's are threads sharing one process). Efficiency (ServeSharp rows) is served req/s ÷ the bare model's inferences/s: the same ONNX file through ONNX Runtime in the bench's process, same batch size, workers and threads, pre-made input tensors of the preprocessed shapes, no server up; goals, reported and not asserted: ≥ 80 % for TorchServe JSON at 224, ≥ 90 % for the mask PNG at 520.");
    md.AppendLine();
    md.AppendLine("| scenario | clients | server | req/s | p50 ms | p90 ms | p99 ms | peak RSS MiB | peak RSS MiB per worker | efficiency | ServeSharp / best peer (throughput / p99) | failures |");
    md.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
    foreach (var row in rows) md.AppendLine(row);
    md.AppendLine();
    foreach (var line in log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries)) md.AppendLine($"- {line}");
    if (sections.Length > 0)
    {
        md.AppendLine();
        md.AppendLine($"### Per-request time by stage ({StageBreakdown.Metric}: Δsum ÷ Δcount over each ServeSharp row's measured part; machine: {cpu})");
        md.AppendLine();
        md.Append(sections);
    }
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
internal sealed record Contender(string Label, Func<Task<BenchServer>> Start, string Path, int Workers = 1, BareSpec? Bare = null, string? Model = null);

/// <summary>One contender's figures in a scenario; <see cref="Efficiency"/> for ServeSharp's rows.</summary>
internal sealed record ScenarioResult(Contender Who, LoadResult Result, bool Ours, double? Efficiency);
