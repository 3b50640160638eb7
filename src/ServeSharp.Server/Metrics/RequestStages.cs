using System.Collections.Concurrent;
using Prometheus;
using ServeSharp.Sdk;

namespace ServeSharp.Server.Metrics;

/// <summary>
/// ServeSharp's own breakdown of a prediction's time (not a TorchServe metric, so metrics.yaml does not govern it, and
/// it is not written to ts_metrics.log): <c>servesharp_request_stage_seconds{model_name, stage}</c>, one histogram per
/// stage, and <c>servesharp_request_seconds{model_name}</c>, the request's wall time on the server from the start of
/// read_body to the end of write. The stages cover that wall time (a batch's run counts for each of its requests).
/// <para>
/// Every inference API records it, through <see cref="PredictionTiming"/>: TorchServe's REST predictions and gRPC
/// Predictions / StreamPredictions / StreamPredictions2, KServe v1 <c>:predict</c>, and OIP v2 infer over REST and gRPC.
/// Only answered predictions are observed; one refused or failed is not.
/// </para>
/// <para>
/// One observation is one protocol request, whatever its number of instances. KServe v1's instances and OIP v2's batch
/// dimension each become a job of their own; they share one read_body (the body is read once) and the request is
/// observed through the instance its answer waited for, the last one a worker answered: that instance's stages are the
/// request's critical path and sum to its wall time (its queue_wait includes the wait behind its own siblings), and
/// the other instances' stages, which ran inside it, are not observed. A request of 32 instances is so one
/// wall-time observation, not 32 copies of the same one that would outweigh single requests in the percentiles.
/// </para>
/// <para>
/// Where write ends: over HTTP when the answer's last byte is flushed to the connection; over gRPC when the message is
/// handed to the call (a stream's WriteAsync returned, or the unary reply returned to gRPC, which then encodes and sends
/// it outside the timing). Over gRPC read_body starts once gRPC has read and decoded the message, so it counts only the
/// message's turning into the request(s). KServe v1 and OIP v2 REST write the protocol's JSON at the endpoint: that
/// counts as serialize.
/// </para>
/// </summary>
internal sealed class RequestStages
{
    // RequestStage's values, in order, as the stage label spells them (the bench scrapes these names).
    private static readonly string[] StageLabels =
        ["read_body", "decode", "preprocess", "queue_wait", "batch_formation", "inference", "postprocess", "serialize", "write"];

    // 50 µs to ~100 s: a stage can be a copy of a few bytes or a large model's run.
    private static readonly double[] Buckets = Histogram.ExponentialBuckets(0.00005, 2, 22);

    private readonly Histogram _stages;
    private readonly Histogram _requests;

    // Per model, the labelled children, looked up once: observing then costs no allocation.
    private readonly ConcurrentDictionary<string, (Histogram.Child[] Stages, Histogram.Child Request)> _children = new(StringComparer.Ordinal);

    public RequestStages(MetricFactory factory)
    {
        _stages = factory.CreateHistogram("servesharp_request_stage_seconds", "Time a prediction spent in each stage on the server, in seconds",
            new HistogramConfiguration { LabelNames = ["model_name", "stage"], Buckets = Buckets });
        _requests = factory.CreateHistogram("servesharp_request_seconds", "A prediction's wall time on the server, from reading its body to writing its answer, in seconds",
            new HistogramConfiguration { LabelNames = ["model_name"], Buckets = Buckets });
    }

    public void Observe(string model, InferenceRequest request)
    {
        if (!request.IsTimed) return;
        var (stages, wall) = _children.GetOrAdd(model, Children);
        double frequency = request.Clock.TimestampFrequency;
        for (var i = 0; i < stages.Length; i++) stages[i].Observe(request.GetStageTicks((RequestStage)i) / frequency);
        wall.Observe((request.StageMark - request.ArrivedAt) / frequency); // the end of write
    }

    private (Histogram.Child[], Histogram.Child) Children(string model)
    {
        var stages = new Histogram.Child[StageLabels.Length];
        for (var i = 0; i < stages.Length; i++) stages[i] = _stages.WithLabels(model, StageLabels[i]);
        return (stages, _requests.WithLabels(model));
    }
}
