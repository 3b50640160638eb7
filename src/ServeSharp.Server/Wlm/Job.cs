using ServeSharp.Sdk;

namespace ServeSharp.Server.Wlm;

/// <summary>
/// One prediction request on its way through the queue to a worker. The endpoint awaits <see cref="Completion"/>;
/// exactly one party completes it (the worker, the response timeout, the client going away, or an unregister),
/// so no request is lost or answered twice.
/// </summary>
internal sealed class Job : IDisposable
{
    private readonly TaskCompletionSource<JobResult> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenRegistration _clientGone;

    /// <param name="request">What the handler sees.</param>
    /// <param name="enqueuedAt">TimeProvider timestamp of admission, for the queue-latency metrics.</param>
    /// <param name="cancellationToken">The client's: when it fires, a queued job is dropped and a running batch whose
    /// clients have all gone is cancelled.</param>
    public Job(InferenceRequest request, InferenceProtocol protocol, long enqueuedAt, CancellationToken cancellationToken)
    {
        Request = request;
        Protocol = protocol;
        EnqueuedAt = enqueuedAt;
        CancellationToken = cancellationToken;
        // Answering at once frees the endpoint; the aggregator skips completed jobs instead of running them.
        _clientGone = cancellationToken.UnsafeRegister(static j => ((Job)j!).TryFail(499, "The client closed the request", "ClientClosedRequest"), this);
    }

    public InferenceRequest Request { get; }

    /// <summary>TorchServe's DESCRIBE command (customized describe): always a batch of its own, and not an inference in the metrics.</summary>
    public bool IsDescribe { get; init; }
    public InferenceProtocol Protocol { get; }
    public long EnqueuedAt { get; }
    public CancellationToken CancellationToken { get; }

    /// <summary>The request metrics' model_version: the version the request named, or "default" (TorchServe's labels).</summary>
    public string VersionLabel { get; init; } = "default";

    public Task<JobResult> Completion => _completion.Task;
    public bool IsCompleted => _completion.Task.IsCompleted;

    public bool TryComplete(JobResult result) => _completion.TrySetResult(result);

    public bool TryFail(int statusCode, string message, string? type = null) =>
        TryComplete(JobResult.FromOutput(HandlerOutput.Error(statusCode, message, type), null));

    public void Dispose() => _clientGone.Dispose();
}

/// <summary>The protocol a prediction came in by: the request metrics carry it as their <c>protocol</c> label.</summary>
internal enum InferenceProtocol { TorchServeRest, TorchServeGrpc, KServeV1, OipRest, OipGrpc }

/// <summary>
/// What the endpoint writes back: status, content type, body, extra headers, and what owns a pooled body (disposed once
/// it is written; see <see cref="HandlerOutput.BodyOwner"/>).
/// </summary>
internal readonly record struct JobResult(int StatusCode, string ContentType, ReadOnlyMemory<byte> Body, IReadOnlyDictionary<string, string>? Headers,
    IDisposable? BodyOwner = null)
{
    /// <summary>
    /// Combines a handler's output with what the handler set on the request (TorchServe's
    /// <c>set_response_content_type</c> / <c>set_response_status</c> win over the output's defaults).
    /// </summary>
    public static JobResult FromOutput(HandlerOutput output, ResponseSettings? settings)
    {
        var status = output.StatusCode ?? settings?.StatusCode ?? 200;
        var contentType = settings?.ContentType ?? output.ContentType;
        return new JobResult(status, contentType, output.Body, settings?.Headers.Count > 0 ? settings.Headers : null, output.BodyOwner);
    }
}
