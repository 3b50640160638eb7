using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Metrics;

/// <summary>
/// The per-request time breakdown on the metrics API (servesharp_request_stage_seconds): every stage of every prediction
/// is counted, and the stages account for the request's whole wall time on the server. An accounting check, not a speed one.
/// </summary>
public sealed class StageMetricsTests
{
    internal static readonly string[] Stages =
        ["read_body", "decode", "preprocess", "queue_wait", "batch_formation", "inference", "postprocess", "serialize", "write"];

    [Fact]
    public async Task Each_stage_counts_every_prediction_and_the_stages_sum_to_the_wall_time_within_5_percent()
    {
        using var dir = new TempDir();
        var store = dir.Sub("model-store");
        // TorchServe's image_segmenter path: Resize(256), CenterCrop(224), TorchServe's per-pixel JSON.
        TestArchives.Write(dir, store, "seg", "image_segmenter", "minWorkers: 1\nhandler:\n  mode: torchserve\n  output: torchserve\n", TestModels.Tiny);
        await using var server = await InProcessServer.StartAsync(store, ["seg=seg.mar"]);
        await server.WaitReadyAsync("seg");

        var (_, png) = Images.Noise(480, 360, seed: 7);
        using var inference = server.Inference;
        const int n = 12;
        for (var i = 0; i < n; i++)
        {
            using var body = new ByteArrayContent(png);
            body.Headers.ContentType = new MediaTypeHeaderValue("image/png");
            using var response = await inference.PostAsync("/predictions/seg", body);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(224 * 224, CountPixels(await response.Content.ReadAsStringAsync()));
        }

        using var metrics = server.Metrics;
        var text = await metrics.GetStringAsync("/metrics");
        var stageSum = 0.0;
        foreach (var stage in Stages)
        {
            Assert.Equal(n, Sample(text, $"servesharp_request_stage_seconds_count{{model_name=\"seg\",stage=\"{stage}\"}}"));
            var sum = Sample(text, $"servesharp_request_stage_seconds_sum{{model_name=\"seg\",stage=\"{stage}\"}}");
            Assert.True(sum >= 0, $"{stage}: {sum}");
            stageSum += sum;
        }
        Assert.Equal(n, Sample(text, "servesharp_request_seconds_count{model_name=\"seg\"}"));
        var wall = Sample(text, "servesharp_request_seconds_sum{model_name=\"seg\"}");
        // The work stages did happen: the body was read, the image decoded, resized, run, arg-maxed and written as JSON.
        foreach (var stage in (string[])["read_body", "decode", "preprocess", "inference", "postprocess", "serialize", "write"])
            Assert.True(Sample(text, $"servesharp_request_stage_seconds_sum{{model_name=\"seg\",stage=\"{stage}\"}}") > 0, stage);
        // Means over the same n requests: the sums compare as the means do.
        Assert.InRange(stageSum / n, wall / n * 0.95, wall / n * 1.05);
    }

    // "[[[c, p], [c, p], ...], ...]": one "[" per pixel, plus one per row and one for the whole.
    private static int CountPixels(string json) => json.Count(c => c == '[') - 224 - 1;

    internal static double Sample(string text, string series)
    {
        var value = TrySample(text, series);
        Assert.True(value.HasValue, $"no sample {series} in:\n{text}");
        return value.Value;
    }

    /// <summary>A series' value in the metrics API's text; null when the series is not there (nothing observed yet).</summary>
    internal static double? TrySample(string text, string series)
    {
        var match = Regex.Match(text, $"^{Regex.Escape(series)} (\\S+)$", RegexOptions.Multiline);
        return match.Success ? double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : null;
    }
}
