using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using Microsoft.ML.OnnxRuntime;
using ServeSharp.Archive;
using ServeSharp.Handlers.Segmentation.Int8;
using SkiaSharp;

namespace ServeSharp.Bench;

/// <summary>
/// int8 vs fp32 (<c>--only int8</c>): the same fitted DeepLabV3-MobileNetV3 (a random one is too chaotic for agreement
/// to mean anything) archived twice — <c>precision: int8</c> through <c>./servesharp-archiver</c> (calibrated and
/// gated on the bench's photographs) and fp32 — each served by ServeSharp and measured alternately; then the class-map
/// agreement of the two servers on the same photographs, and bare ONNX Runtime latency of both models at 224² and 520².
/// </summary>
internal static class Int8Scenario
{
    public static async Task RunAsync(string root, string work, string store, string photos, int cores, bool quick,
        Action<string> say, Action<string, int, string, LoadResult, LoadResult?> row)
    {
        var flags = string.Join(" ", CpuFeatures.Flags.Select(kv => kv.Value ? kv.Key : "no " + kv.Key));
        say($"int8: CPU {flags}{(CpuFeatures.HasVnni ? "" : " — no VNNI: ONNX Runtime's u8s8 kernels fall back to AVX2/AVX-512 multiply-adds")}");

        var onnx = Path.Combine(work, "deeplabv3_mobilenet_v3_large-fitted.onnx");
        if (!File.Exists(onnx))
            Run("/usr/bin/python3", root, Path.Combine(root, "tools/models/export_segmentation.py"), "--arch", "deeplabv3_mobilenet_v3_large",
                "--num-classes", "6", "--fit-steps", "150", "--seed", "0", "--out", onnx);

        // The photographs (not the large one) calibrate the int8 model and are what both servers answer. The archive is
        // forced: this measures speed whatever the gate says, and reports the agreement the archiver measured.
        var samples = Directory.CreateDirectory(Path.Combine(work, "int8-samples")).FullName;
        var files = Directory.GetFiles(photos, "*.jpg").Where(f => !f.EndsWith("large.jpg", StringComparison.Ordinal)).Order().ToList();
        foreach (var f in files) File.Copy(f, Path.Combine(samples, Path.GetFileName(f)), overwrite: true);
        var images = files.Select(File.ReadAllBytes).ToList();

        const string Handler = "handler:\n  mode: torchserve\n  output: mask\n";
        const string Pool = "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\n";
        File.WriteAllText(Path.Combine(work, "i8-config.yaml"), $"precision: int8\n{Pool}{Handler}");
        File.WriteAllText(Path.Combine(work, "f32-config.yaml"), $"{Pool}{Handler}");
        say(Run(Path.Combine(root, "servesharp-archiver"), root, "--model-name", "i8", "--serialized-file", onnx, "--handler", "image_segmenter",
            "-c", Path.Combine(work, "i8-config.yaml"), "--calibration-samples", samples, "--export-path", store, "-f", "--force-int8").Replace("\n", " ", StringComparison.Ordinal));
        ArchiveWriter.Write(new ArchiveSpec { ModelName = "f32", Handler = "image_segmenter", SerializedFile = onnx, ConfigFile = Path.Combine(work, "f32-config.yaml"), ExportPath = store, Force = true });

        using var int8 = await BenchServer.StartServeSharpAsync(Directory.CreateDirectory(Path.Combine(work, "server-i8")).FullName, store, ["i8=i8.mar"]);
        using var fp32 = await BenchServer.StartServeSharpAsync(Directory.CreateDirectory(Path.Combine(work, "server-f32")).FullName, store, ["f32=f32.mar"]);
        var (same, total) = (0L, 0L);
        foreach (var image in images)
        {
            var a = await Mask(fp32.Http, "/predictions/f32", image);
            var b = await Mask(int8.Http, "/predictions/i8", image);
            for (var i = 0; i < a.Length; i++)
            {
                if (a[i] == 255) continue; // outside TorchServe's centre crop: not predicted
                total++;
                same += a[i] == b[i] ? 1 : 0;
            }
        }
        say(string.Create(CultureInfo.InvariantCulture, $"int8: served class agreement int8 vs fp32 {100.0 * same / total:F2} % over {total} predicted pixels of {images.Count} photographs"));

        // Both servers run at once (one worker each), measured alternately so the shared machine's noise falls on both.
        const string Title = "deeplabv3_mobilenet_v3_large (fitted), torchserve mode, mask: int8 vs fp32";
        var n = quick ? 24 : 96;
        foreach (var clients in (int[])[1, cores])
        {
            var results = new List<(string Who, LoadResult Result)>();
            for (var round = 0; round < 2; round++)
            {
                foreach (var (who, server, path) in new[] { ("fp32", fp32, "/predictions/f32"), ("int8", int8, "/predictions/i8") })
                {
                    await LoadGenerator.RunAsync(server.Http, path, images, clients, Math.Max(16, clients * 8), server.Pid);
                    results.Add((who, await LoadGenerator.RunAsync(server.Http, path, images, clients, n, server.Pid)));
                }
            }
            var f = results.Where(r => r.Who == "fp32").Select(r => r.Result).ToList();
            var q = results.Where(r => r.Who == "int8").Select(r => r.Result).ToList();
            foreach (var (who, r) in results) row(Title, clients, $"ServeSharp {who}", r, null);
            say(string.Create(CultureInfo.InvariantCulture,
                $"int8: c={clients} fp32 {f.Average(r => r.Throughput):F2} req/s (p99 {f.Average(r => r.P99):F0} ms), int8 {q.Average(r => r.Throughput):F2} req/s (p99 {q.Average(r => r.P99):F0} ms): speed-up {q.Average(r => r.Throughput) / f.Average(r => r.Throughput):F2}× (mean of 2 rounds)"));
        }

        var quantized = Path.Combine(work, "i8-model.int8.onnx");
        using (var zip = ZipFile.OpenRead(Path.Combine(store, "i8.mar")))
            zip.GetEntry("deeplabv3_mobilenet_v3_large-fitted.int8.onnx")!.ExtractToFile(quantized, overwrite: true);
        foreach (var size in (int[])[224, 520])
        {
            var a = BareMilliseconds(onnx, size, cores, quick ? 10 : 30);
            var b = BareMilliseconds(quantized, size, cores, quick ? 10 : 30);
            say(string.Create(CultureInfo.InvariantCulture, $"int8: bare ONNX Runtime, {size}², {cores} threads, median: fp32 {a:F1} ms, int8 {b:F1} ms, speed-up {a / b:F2}×"));
        }
    }

    // Median latency of one 1×3×size×size run (after warm-up), the session as the server opens it.
    private static double BareMilliseconds(string model, int size, int threads, int runs)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = threads, InterOpNumThreads = 1 };
        options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        using var session = new InferenceSession(model, options);
        var data = new float[3 * size * size];
        var random = new Random(0);
        for (var i = 0; i < data.Length; i++) data[i] = (float)(random.NextDouble() * 4 - 2);
        using var input = OrtValue.CreateTensorValueFromMemory(data, [1, 3, size, size]);
        using var run = new RunOptions();
        var name = session.InputMetadata.Keys.First();
        var times = new List<double>();
        for (var i = 0; i < runs + 3; i++)
        {
            var start = Stopwatch.GetTimestamp();
            using var outputs = session.Run(run, [name], [input], [session.OutputMetadata.Keys.First()]);
            if (i >= 3) times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }

    private static async Task<byte[]> Mask(HttpClient http, string path, byte[] image)
    {
        using var response = await http.PostAsync(path, new ByteArrayContent(image));
        response.EnsureSuccessStatusCode();
        using var bitmap = SKBitmap.Decode(await response.Content.ReadAsByteArrayAsync());
        using var gray = new SKBitmap(new SKImageInfo(bitmap.Width, bitmap.Height, SKColorType.Gray8, SKAlphaType.Opaque));
        if (!bitmap.CopyTo(gray, SKColorType.Gray8)) throw new InvalidOperationException("the mask is not an 8-bit image");
        return gray.GetPixelSpan().ToArray();
    }

    private static string Run(string file, string dir, params string[] arguments)
    {
        var info = new ProcessStartInfo(file) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in arguments) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var error = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{Path.GetFileName(file)} failed ({p.ExitCode}): {output}{error.Result}");
        return output.Trim();
    }
}
