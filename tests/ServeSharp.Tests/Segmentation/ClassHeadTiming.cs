using System.Diagnostics;
using Xunit.Abstractions;

namespace ServeSharp.Tests.Segmentation;

/// <summary>
/// Not a test: the figures behind <c>class_head</c>'s CPU default, printed, never asserted. Runs only with
/// SERVESHARP_MEASURE_CLASS_HEAD=1 (it takes about a minute and wants a quiet machine). The logits path and the class-head
/// path alternate in blocks on the same photographs, so drift on a shared machine falls on both.
/// </summary>
[Collection("parity")]
public sealed class ClassHeadTiming(ParityModels models, ITestOutputHelper log)
{
    [MeasurementFact]
    public async Task Logits_path_against_class_head_path_on_the_cpu_provider()
    {
        using var plain = new SegmenterHarness(models.DeepLabV3Plus.Onnx, "  mode: torchserve\n  class_head: false\n");
        using var headed = new SegmenterHarness(models.DeepLabV3Plus.Onnx, "  mode: torchserve\n  class_head: true\n");
        var photos = new List<(byte[], string)>();
        foreach (var photo in ParityModels.PngPhotos) photos.Add((await File.ReadAllBytesAsync(models.Photo(photo)), ""));

        foreach (var batch in new[] { 1, 4 })
        {
            var requests = photos.Take(batch).ToArray();
            const int blocks = 10, perBlock = 8;
            var times = new[] { new List<double>(), new List<double>() };
            foreach (var h in new[] { plain, headed }) await h.RunAsync(requests); // warm-up: the first run of a shape
            for (var b = 0; b < blocks; b++)
            {
                for (var which = 0; which < 2; which++)
                {
                    var harness = (b + which) % 2 == 0 ? plain : headed; // A B, B A, ...
                    var slot = harness == plain ? 0 : 1;
                    for (var r = 0; r < perBlock; r++)
                    {
                        var started = Stopwatch.GetTimestamp();
                        await harness.RunAsync(requests);
                        times[slot].Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                    }
                }
            }
            log.WriteLine($"batch {batch}: logits path median {Median(times[0]):F1} ms, class head median {Median(times[1]):F1} ms " +
                $"(means {times[0].Average():F1} / {times[1].Average():F1}; {blocks * perBlock} batches each, alternating blocks of {perBlock})");
        }
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}

/// <summary>Runs only when SERVESHARP_MEASURE_CLASS_HEAD=1: measurements print figures and assert nothing.</summary>
public sealed class MeasurementFactAttribute : FactAttribute
{
    public const string Variable = "SERVESHARP_MEASURE_CLASS_HEAD";

    public MeasurementFactAttribute()
    {
        if (Environment.GetEnvironmentVariable(Variable) != "1") Skip = $"a measurement, not a test: set {Variable}=1 to run it";
    }
}
