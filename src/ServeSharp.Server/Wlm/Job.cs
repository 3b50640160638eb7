using System.Diagnostics;
using ServeSharp.Sdk;

namespace ServeSharp.Server.Wlm;

/// <summary>
/// One prediction request on its way through the queue to a worker. The endpoint awaits <see cref="Completion"/>;
/// exactly one party completes it (the worker, a timeout, or an unregister), so no request is lost or answered twice.
/// </summary>
public sealed class Job(InferenceRequest request)
{
    private readonly TaskCompletionSource<JobResult> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public InferenceRequest Request { get; } = request;

    /// <summary>When the job entered the queue (Stopwatch ticks), for queue-latency metrics.</summary>
    public long EnqueuedAt { get; } = Stopwatch.GetTimestamp();

    public Task<JobResult> Completion => _completion.Task;

    public bool TryComplete(JobResult result) => _completion.TrySetResult(result);

    public bool TryFail(int statusCode, string message, string? type = null) =>
        TryComplete(JobResult.FromOutput(HandlerOutput.Error(statusCode, message, type), null));
}

/// <summary>What the endpoint writes back: status, content type, body, extra headers.</summary>
public readonly record struct JobResult(int StatusCode, string ContentType, ReadOnlyMemory<byte> Body, IReadOnlyDictionary<string, string>? Headers)
{
    /// <summary>
    /// Combines a handler's output with what the handler set on the request (TorchServe's
    /// <c>set_response_content_type</c> / <c>set_response_status</c> win over the output's defaults).
    /// </summary>
    public static JobResult FromOutput(HandlerOutput output, ResponseSettings? settings)
    {
        var status = output.StatusCode ?? settings?.StatusCode ?? 200;
        var contentType = settings?.ContentType ?? output.ContentType;
        return new JobResult(status, contentType, output.Body, settings?.Headers.Count > 0 ? settings.Headers : null);
    }
}
