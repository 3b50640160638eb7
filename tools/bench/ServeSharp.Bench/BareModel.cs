using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;
using ServeSharp.Sdk;

namespace ServeSharp.Bench;

/// <summary>
/// How to run a scenario's model bare: the same ONNX file, batch size and threads as the server's workers, inputs of
/// the shapes the server's preprocess makes (one CHW shape per photograph). <see cref="Shared"/>: one session for every
/// worker (the model-config key <c>sharedSession: true</c>) instead of one each.
/// </summary>
public sealed record BareSpec(string Onnx, IReadOnlyList<int[]> Shapes, int BatchSize, int Workers, int Threads, bool Shared = false)
{
    public string Key => $"{Onnx}|{string.Join(';', Shapes.Select(s => string.Join('x', s)))}|{BatchSize}|{Workers}|{Threads}|{Shared}";
}

/// <summary>
/// The bare model in this process: sessions made by <see cref="OrtSessionFactory"/> (the server's own options), a
/// pre-made input tensor per shape, and <see cref="BareSpec.Workers"/> threads calling Run back to back, as the
/// server's long-lived worker threads do. No decode, no preprocess, no postprocess, no HTTP.
/// </summary>
public static class BareModel
{
    public static BareRate Measure(BareSpec spec, int minRunsPerWorker, TimeSpan minTime)
    {
        var properties = new SystemProperties { BatchSize = spec.BatchSize, IntraOpThreads = spec.Threads, InterOpThreads = 1 };
        var sessions = new List<InferenceSession>();
        try
        {
            for (var w = 0; w < (spec.Shared ? 1 : spec.Workers); w++) sessions.Add(OrtSessionFactory.Create(spec.Onnx, properties, NullLogger.Instance));
            // Every shape once on every session first: ONNX Runtime plans its kernels on the first run of a shape.
            RunAll(spec, sessions, runsPerWorker: spec.Shapes.Count, TimeSpan.Zero);
            return RunAll(spec, sessions, Math.Max(minRunsPerWorker, 1), minTime);
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
        }
    }

    private static BareRate RunAll(BareSpec spec, List<InferenceSession> sessions, int runsPerWorker, TimeSpan minTime)
    {
        var runs = new int[spec.Workers];
        var clock = Stopwatch.StartNew();
        var threads = new Thread[spec.Workers];
        for (var w = 0; w < spec.Workers; w++)
        {
            var worker = w;
            threads[w] = new Thread(() => runs[worker] = Loop(spec, sessions[spec.Shared ? 0 : worker], runsPerWorker, minTime, clock)) { IsBackground = true };
            threads[w].Start();
        }
        foreach (var t in threads) t.Join();
        return new BareRate(spec.Workers, spec.BatchSize, runs.Sum(), clock.Elapsed.TotalSeconds);
    }

    private static int Loop(BareSpec spec, InferenceSession session, int minRuns, TimeSpan minTime, Stopwatch clock)
    {
        var input = session.InputMetadata.Keys.First();
        var inputs = spec.Shapes.Select(s => MakeInput(spec.BatchSize, s)).ToList();
        try
        {
            using var options = new RunOptions();
            var runs = 0;
            while (runs < minRuns || clock.Elapsed < minTime)
            {
                using var outputs = session.Run(options, [input], [inputs[runs % inputs.Count]], session.OutputNames);
                runs++;
            }
            return runs;
        }
        finally
        {
            foreach (var v in inputs) v.Dispose();
        }
    }

    // Normalised-image-like values (roughly N(0, 1)), made once: the bare run times ONNX Runtime, not input making.
    private static OrtValue MakeInput(int batch, int[] chw)
    {
        var data = new float[batch * chw[0] * chw[1] * chw[2]];
        var random = new Random(0);
        for (var i = 0; i < data.Length; i++) data[i] = (float)(random.NextDouble() * 4 - 2);
        return OrtValue.CreateTensorValueFromMemory(data, [batch, chw[0], chw[1], chw[2]]);
    }
}
