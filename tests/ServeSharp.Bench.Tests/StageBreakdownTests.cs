using Prometheus;
using ServeSharp.Bench;

namespace ServeSharp.Bench.Tests;

public sealed class StageBreakdownTests
{
    // The metric as ServeSharp's metrics port writes it: prometheus-net's text exposition, two models, a version label.
    [Fact]
    public async Task Per_stage_means_come_from_the_measured_part_only()
    {
        var registry = Metrics.NewCustomRegistry();
        var stages = Metrics.WithCustomRegistry(registry).CreateHistogram(StageBreakdown.Metric, "time per request per stage",
            new HistogramConfiguration { LabelNames = ["model_name", "model_version", "stage"], Buckets = Histogram.ExponentialBuckets(0.0005, 2, 16) });
        var wall = Metrics.WithCustomRegistry(registry).CreateHistogram(StageBreakdown.WallMetric, "wall time per request",
            new HistogramConfiguration { LabelNames = ["model_name"] });
        // Warm-up: slow first requests the breakdown must not count.
        foreach (var stage in StageBreakdown.Stages) stages.WithLabels("mnv3", "1.0", stage).Observe(0.5);
        wall.WithLabels("mnv3").Observe(4.5);
        stages.WithLabels("other", "1.0", "inference").Observe(9);
        var before = StageBreakdown.Parse(await Export(registry), "mnv3")!;

        // The measured part: 4 requests, inference 20 ms each (two on version 2.0), decode 2 ms, queue_wait 10 ms;
        // the other model's traffic is left out.
        for (var i = 0; i < 4; i++)
        {
            stages.WithLabels("mnv3", i < 2 ? "1.0" : "2.0", "inference").Observe(0.020);
            stages.WithLabels("mnv3", "1.0", "decode").Observe(0.002);
            stages.WithLabels("mnv3", "1.0", "queue_wait").Observe(0.010);
            stages.WithLabels("other", "1.0", "inference").Observe(5);
            wall.WithLabels("mnv3").Observe(0.033);
            wall.WithLabels("other").Observe(5);
        }
        var after = StageBreakdown.Parse(await Export(registry), "mnv3")!;

        var b = StageBreakdown.Compute(before, after, measuredMeanMs: 40);

        Assert.Equal(["decode", "queue_wait", "inference"], b.Stages.Select(s => s.Stage));
        Assert.Equal(2, b.Stages[0].MeanMs, 6);
        Assert.Equal(10, b.Stages[1].MeanMs, 6);
        Assert.Equal(20, b.Stages[2].MeanMs, 6);
        Assert.Equal(4, b.Stages[2].Count);
        Assert.Equal(0.5, b.Stages[2].Share, 6);
        Assert.Equal(32, b.SumMs, 6);
        Assert.Equal(8, b.UnaccountedMs, 6);
        Assert.Equal(33, b.ServerWallMs!.Value, 6);

        var table = StageBreakdown.Table("mnv3 c=8", b);
        Assert.Contains("| inference | 20.00 | 50.0 % | 4 |", table, StringComparison.Ordinal);
        Assert.Contains("| **sum of stages** | 32.00 | 80.0 % | |", table, StringComparison.Ordinal);
        Assert.Contains("| not in any stage | 8.00 | 20.0 % | |", table, StringComparison.Ordinal);
        Assert.Contains("| server wall time (servesharp_request_seconds) | 33.00 | 82.5 % | |", table, StringComparison.Ordinal);
    }

    [Fact]
    public void A_server_without_the_metric_gives_null()
    {
        const string text = """
            # HELP ts_batch_size Requests per batch
            # TYPE ts_batch_size histogram
            ts_batch_size_bucket{model_name="mnv3",le="1"} 12
            ts_batch_size_sum{model_name="mnv3"} 12
            ts_batch_size_count{model_name="mnv3"} 12
            servesharp_request_seconds_sum{model_name="mnv3"} 1.5
            servesharp_request_seconds_count{model_name="mnv3"} 12
            """;

        Assert.Null(StageBreakdown.Parse(text, "mnv3"));
    }

    [Fact]
    public void Labels_in_any_order_escapes_and_exponents_are_read()
    {
        const string text = """
            servesharp_request_stage_seconds_sum{stage="inference",model_name="a\"b"} 1.5e-2
            servesharp_request_stage_seconds_count{stage="inference",model_name="a\"b"} 3
            servesharp_request_stage_seconds_sum{stage="inference",model_name="a"} 7
            servesharp_request_stage_seconds_count{stage="inference",model_name="a"} 1
            """;

        var stages = StageBreakdown.Parse(text, "a\"b")!;

        Assert.Equal(new StageTotal(0.015, 3), stages["inference"]);
    }

    // Stages the server adds beyond the known nine are kept, after them; a stage without new observations is left out.
    [Fact]
    public void Unknown_stages_follow_and_idle_stages_are_left_out()
    {
        var before = new Dictionary<string, StageTotal> { ["inference"] = new(1, 10), ["write"] = new(0.1, 10) };
        var after = new Dictionary<string, StageTotal> { ["inference"] = new(1.3, 20), ["write"] = new(0.1, 10), ["auth"] = new(0.01, 10) };

        var b = StageBreakdown.Compute(before, after, measuredMeanMs: 0);

        Assert.Equal(["inference", "auth"], b.Stages.Select(s => s.Stage));
        Assert.Equal(30, b.Stages[0].MeanMs, 6);
        Assert.Equal(0, b.Stages[0].Share); // no measured latency: no share, no division by zero
        Assert.Null(b.ServerWallMs);
    }

    private static async Task<string> Export(CollectorRegistry registry)
    {
        using var stream = new MemoryStream();
        await registry.CollectAndExportAsTextAsync(stream);
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }
}
