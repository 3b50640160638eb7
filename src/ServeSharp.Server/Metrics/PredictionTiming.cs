using ServeSharp.Sdk;

namespace ServeSharp.Server.Metrics;

/// <summary>
/// The endpoint's part of <see cref="RequestStages"/>, one way for every inference API (TorchServe REST and gRPC, KServe
/// v1, OIP v2 REST and gRPC): the protocol request's arrival, its body read, its answer written, then one observation.
/// The stages between (queue, batch, handler) are timed on the request by the aggregator, the worker and the handler.
/// </summary>
internal sealed class PredictionTiming(ServerMetrics metrics, TimeProvider time)
{
    /// <summary>The server's clock; the requests an endpoint builds take it as their <see cref="InferenceRequest.Clock"/>.</summary>
    public TimeProvider Clock => time;

    /// <summary>A protocol request's arrival: the endpoint takes it before it reads anything of the request.</summary>
    public long Arrived() => time.GetTimestamp();

    /// <summary>The body is read and turned into <paramref name="request"/>: read_body ends now.</summary>
    public void BodyRead(InferenceRequest request, long arrived)
    {
        request.StartTiming(arrived);
        request.EndStage(RequestStage.ReadBody, time.GetTimestamp());
    }

    /// <summary>
    /// The body is read and split into one request per instance (KServe v1's instances, OIP v2's batch dimension): they
    /// share the one read, so each starts at <paramref name="arrived"/> and ends read_body at the same time.
    /// </summary>
    public void BodyRead(IReadOnlyList<InferenceRequest> instances, long arrived)
    {
        var read = time.GetTimestamp();
        for (var i = 0; i < instances.Count; i++)
        {
            instances[i].StartTiming(arrived);
            instances[i].EndStage(RequestStage.ReadBody, read);
        }
    }

    /// <summary>
    /// Of a protocol request's instances, the one its answer waited for: the last a worker answered. Its stages are the
    /// request's critical path, and they sum to the request's wall time; the others finished inside it.
    /// </summary>
    public static InferenceRequest LastAnswered(IReadOnlyList<InferenceRequest> instances)
    {
        var last = instances[0];
        for (var i = 1; i < instances.Count; i++)
        {
            if (instances[i].StageMark > last.StageMark) last = instances[i];
        }
        return last;
    }

    /// <summary>
    /// The endpoint has written the protocol's answer (KServe v1's and OIP v2 REST's JSON, the outputs stacked): that is
    /// serialize work, as the handler's own serialize is, not write.
    /// </summary>
    public void Serialized(InferenceRequest request) => request.EndStage(RequestStage.Serialize, time.GetTimestamp());

    /// <summary>
    /// The answer is handed over: over HTTP its last byte flushed to the connection, over gRPC the message given to the
    /// call (WriteAsync returned, or the unary reply returned to gRPC, which encodes and sends it afterwards). write
    /// ends now and the request is observed under <paramref name="model"/>.
    /// </summary>
    public void Written(string model, InferenceRequest request)
    {
        request.EndStage(RequestStage.Write, time.GetTimestamp());
        metrics.RequestServed(model, request);
    }
}
