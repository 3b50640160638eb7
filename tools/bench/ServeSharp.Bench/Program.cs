using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using ServeSharp.Archive;
using ServeSharp.Bench;

// tools/bench: one command, both servers, the same weights, alternating scenarios, one markdown table.
//   dotnet run --project tools/bench/ServeSharp.Bench -c Release [-- --quick]
var quick = args.Contains("--quick");
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
Archive("mnv3", mobilenet.Onnx, "batchSize: 1\n", "  mode: torchserve\n");
Archive("mnv3b", mobilenet.Onnx, "batchSize: 8\nmaxBatchDelay: 10\n", "  mode: torchserve\n");
Archive("rn50", resnet.Onnx, "batchSize: 1\nresponseTimeout: 600\n", "  mode: torchvision\n  resize_size: 520\n");
var photos = Path.Combine(work, "photos");
Python("tools/bench/photos.py", photos);
var images = Directory.GetFiles(photos, "*.jpg").Where(f => !f.EndsWith("large.jpg", StringComparison.Ordinal)).Order().Select(File.ReadAllBytes).ToList();
var large = File.ReadAllBytes(Path.Combine(photos, "large.jpg"));

var rows = new List<string>();
var serveDir = Directory.CreateDirectory(Path.Combine(work, "server")).FullName;
using (var ours = await BenchServer.StartServeSharpAsync(serveDir, store, ["mnv3=mnv3.mar", "mnv3b=mnv3b.mar", "rn50=rn50.mar"]))
{
    using (var peer = await BenchServer.StartPeerAsync(root, mobilenet.State, workers: 1))
    {
        await Warm(ours, "/predictions/mnv3");
        await Warm(ours, "/predictions/mnv3b");
        await Warm(peer, "/predictions/mnv3");
        var agreement = await AgreementAsync(ours, peer, "/predictions/mnv3?output=torchserve", "/predictions/mnv3");
        Say($"deeplabv3_mobilenet_v3_large torchserve mode: class agreement ServeSharp vs peer {agreement:P2}");
        var n = quick ? 20 : 60;
        await Compare("deeplabv3_mobilenet_v3_large, torchserve mode, JSON", 1, n, ours, "/predictions/mnv3", peer, "/predictions/mnv3", "batching off");
        await Compare("deeplabv3_mobilenet_v3_large, torchserve mode, JSON", 8, n * 2, ours, "/predictions/mnv3", peer, "/predictions/mnv3", "batching off");
        await Compare("deeplabv3_mobilenet_v3_large, torchserve mode, JSON", 8, n * 2, ours, "/predictions/mnv3b", peer, "/predictions/mnv3", "batching on (8, 10 ms)");
    }
    using (var peer = await BenchServer.StartPeerAsync(root, resnet.State, workers: 1))
    {
        await Warm(ours, "/predictions/rn50?output=mask");
        await Warm(peer, "/predictions/rn50?mode=torchvision&resize_size=520");
        var agreement = await AgreementAsync(ours, peer, "/predictions/rn50?output=torchserve&mode=torchserve", "/predictions/rn50");
        Say($"deeplabv3_resnet50 torchserve mode: class agreement ServeSharp vs peer {agreement:P2}");
        var n = quick ? 3 : 6;
        await Compare("deeplabv3_resnet50, torchvision mode 520 (ServeSharp: mask PNG; peer: JSON)", 1, n, ours, "/predictions/rn50?output=mask", peer, "/predictions/rn50?mode=torchvision&resize_size=520", "batching off");
        await Compare("deeplabv3_resnet50, torchvision mode 520 (ServeSharp: mask PNG; peer: JSON)", 4, n * 2, ours, "/predictions/rn50?output=mask", peer, "/predictions/rn50?mode=torchvision&resize_size=520", "batching off");
    }
    var slide = await LoadGenerator.RunAsync(ours.Http, "/predictions/mnv3?mode=original&crop_size=512,512&stride=384,384&output=summary", [large], 1, quick ? 1 : 3, ours.Pid);
    rows.Add(Row("deeplabv3_mobilenet_v3_large, 2400×1600 JPEG, sliding windows 512/384, summary", 1, "ServeSharp", slide, null));
}

// 2. The machine's peak (ONNX Runtime MatMul) and the model's compute rate, in this same run.
var peak = MatMulPeak();
var (gflop, seconds) = ModelRate(resnet);
var rate = gflop / seconds;
Say($"ONNX Runtime MatMul 2048³ peak: {peak:F1} GFLOP/s; deeplabv3_resnet50 at 520×780: {gflop:F1} GFLOP in {seconds * 1000:F0} ms = {rate:F1} GFLOP/s ({rate / peak:P0} of peak)");

WriteResults();
return 0;

async Task Compare(string scenario, int concurrency, int total, BenchServer ours, string ourPath, BenchServer peer, string peerPath, string note)
{
    var a = await LoadGenerator.RunAsync(ours.Http, ourPath, images, concurrency, total, ours.Pid);
    var b = await LoadGenerator.RunAsync(peer.Http, peerPath, images, concurrency, total, peer.Pid);
    rows.Add(Row(scenario, concurrency, $"ServeSharp ({note})", a, b));
    rows.Add(Row(scenario, concurrency, "peer", b, null));
    Say($"{scenario} c={concurrency} {note}: ServeSharp {a.Throughput:F2} req/s p99 {a.P99:F0} ms; peer {b.Throughput:F2} req/s p99 {b.P99:F0} ms");
}

string Row(string scenario, int concurrency, string server, LoadResult r, LoadResult? peer) =>
    string.Create(CultureInfo.InvariantCulture,
        $"| {scenario} | {concurrency} | {server} | {r.Throughput:F2} | {r.P50:F0} | {r.P90:F0} | {r.P99:F0} | {r.PeakRssBytes / 1048576.0:F0} | {(peer is null ? "" : $"{r.Throughput / peer.Throughput:F2}× / {r.P99 / peer.P99:F2}×")} | {r.Failures} |");

async Task Warm(BenchServer server, string path)
{
    foreach (var image in images) using (var r = await server.Http.PostAsync(path, new ByteArrayContent(image))) r.EnsureSuccessStatusCode();
}

async Task<double> AgreementAsync(BenchServer ours, BenchServer peer, string ourPath, string peerPath)
{
    long same = 0, total = 0;
    foreach (var image in images)
    {
        var a = Classes(await (await ours.Http.PostAsync(ourPath, new ByteArrayContent(image))).Content.ReadAsStringAsync());
        var b = Classes(await (await peer.Http.PostAsync(peerPath, new ByteArrayContent(image))).Content.ReadAsStringAsync());
        for (var i = 0; i < Math.Min(a.Count, b.Count); i++) same += a[i] == b[i] ? 1 : 0;
        total += Math.Max(a.Count, b.Count);
    }
    return (double)same / total;
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
    File.WriteAllText(yaml, $"minWorkers: 1\nmaxWorkers: 1\n{config}handler:\n{handler}");
    ArchiveWriter.Write(new ArchiveSpec { ModelName = name, Handler = "image_segmenter", SerializedFile = onnx, ConfigFile = yaml, ExportPath = store, Force = true });
}

void Python(string script, params string[] arguments)
{
    var info = new ProcessStartInfo("/usr/bin/python3") { WorkingDirectory = root };
    info.ArgumentList.Add(Path.Combine(root, script));
    foreach (var a in arguments) info.ArgumentList.Add(a);
    using var p = Process.Start(info)!;
    p.WaitForExit();
    if (p.ExitCode != 0) throw new InvalidOperationException($"{script} failed ({p.ExitCode})");
}

double MatMulPeak()
{
    var model = Path.Combine(work, "matmul.onnx");
    Python("tools/bench/matmul_onnx.py", model);
    using var options = new SessionOptions { IntraOpNumThreads = Environment.ProcessorCount, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
    using var session = new InferenceSession(model, options);
    const int n = 2048;
    var a = new float[n * n];
    var b = new float[n * n];
    for (var i = 0; i < a.Length; i++) (a[i], b[i]) = ((i % 7) * 0.1f, (i % 5) * 0.1f);
    using var va = OrtValue.CreateTensorValueFromMemory(a, [n, n]);
    using var vb = OrtValue.CreateTensorValueFromMemory(b, [n, n]);
    using var run = new RunOptions();
    var best = double.MaxValue;
    for (var i = 0; i < 6; i++)
    {
        var t = Stopwatch.StartNew();
        using var r = session.Run(run, ["A", "B"], [va, vb], ["C"]);
        best = Math.Min(best, t.Elapsed.TotalSeconds);
    }
    return 2.0 * n * n * n / best / 1e9;
}

(double Gflop, double Seconds) ModelRate((string Onnx, string State) model)
{
    const int h = 520, w = 780;
    var flopsOut = new StringBuilder();
    var info = new ProcessStartInfo("/usr/bin/python3", [Path.Combine(root, "tools", "bench", "flops.py"), "--state", model.State, "--height", $"{h}", "--width", $"{w}"]) { RedirectStandardOutput = true };
    using (var p = Process.Start(info)!)
    {
        flopsOut.Append(p.StandardOutput.ReadToEnd());
        p.WaitForExit();
    }
    var gflop = double.Parse(flopsOut.ToString().Trim().Split('\n')[^1], CultureInfo.InvariantCulture);
    using var options = new SessionOptions { IntraOpNumThreads = Environment.ProcessorCount, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
    using var session = new InferenceSession(model.Onnx, options);
    var input = new float[3 * h * w];
    using var value = OrtValue.CreateTensorValueFromMemory(input, [1, 3, h, w]);
    using var run = new RunOptions();
    var best = double.MaxValue;
    for (var i = 0; i < 3; i++)
    {
        var t = Stopwatch.StartNew();
        using var r = session.Run(run, ["input"], [value], ["out"]);
        best = Math.Min(best, t.Elapsed.TotalSeconds);
    }
    return (gflop, best);
}

void WriteResults()
{
    var cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?";
    var md = new StringBuilder();
    md.AppendLine("# Benchmark results");
    md.AppendLine();
    md.AppendLine($"Written by `dotnet run --project tools/bench/ServeSharp.Bench -c Release{(quick ? " -- --quick" : "")}` on {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC.");
    md.AppendLine($"Machine: {cpu}, {Environment.ProcessorCount} cores, {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 1073741824.0:F0} GiB; .NET {Environment.Version}; ONNX Runtime {typeof(InferenceSession).Assembly.GetName().Version}; the peer runs Debian's PyTorch/torchvision.");
    md.AppendLine("Both servers serve the same weights (seeded random init); one worker each with 2 intra-op threads; closed-loop clients on loopback, JPEG photographs of four sizes.");
    md.AppendLine();
    md.AppendLine("| scenario | clients | server | req/s | p50 ms | p90 ms | p99 ms | peak RSS MiB | ServeSharp/peer (throughput / p99) | failures |");
    md.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
    foreach (var row in rows) md.AppendLine(row);
    md.AppendLine();
    foreach (var line in log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries)) md.AppendLine($"- {line}");
    var path = Path.Combine(root, "bench", "RESULTS.md");
    File.WriteAllText(path, md.ToString());
    Console.WriteLine($"wrote {path}");
}

static string FindRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "ServeSharp.sln"))) return dir.FullName;
    throw new InvalidOperationException("run from inside the repository");
}
