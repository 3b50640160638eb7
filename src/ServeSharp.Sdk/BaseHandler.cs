using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;

namespace ServeSharp.Sdk;

/// <summary>
/// TorchServe's <c>BaseHandler</c> for ONNX models. <see cref="Initialize"/> opens an ONNX Runtime session on
/// the manifest's serializedFile; <see cref="HandleAsync"/> runs the hooks:
/// <list type="number">
/// <item><see cref="Preprocess"/> for each request of the batch — a request that fails here fails alone,</item>
/// <item><c>Inference</c> once, on the inputs of the requests that survived,</item>
/// <item><see cref="Postprocess"/> for each output, in request order.</item>
/// </list>
/// Throw <see cref="HandlerException"/> for a client error; anything else fails the request (or, from
/// <c>Inference</c>, the batch) with TorchServe's 503 "Prediction failed".
/// <para>
/// Cancellation: the worker's token fires at the model's responseTimeout or when every client of the batch has
/// gone. Override the <c>Inference</c> overload that takes it and pass it to ONNX Runtime
/// (<see cref="OrtCancellation.Run"/>), so the run stops and the worker serves the next batch. A handler runs on the
/// server's own worker thread and cannot be killed: one that ignores the token keeps running after the clients got
/// their timeout error, its worker is abandoned 5 s later and replaced, and its thread (and a core) stays busy until
/// the handler returns. Outputs that implement <see cref="IDisposable"/> are disposed after postprocessing, so an
/// output may hold ONNX Runtime's buffers and be read in place.
/// </para>
/// </summary>
/// <typeparam name="TInput">What one request becomes after preprocessing (a tensor, an image).</typeparam>
/// <typeparam name="TOutput">What inference yields for one request.</typeparam>
public abstract class BaseHandler<TInput, TOutput> : IModelHandler
{
    private HandlerContext? _context;
    private SharedSession? _shared;
    private Task _postprocessing = Task.CompletedTask;

    /// <summary>The context given to <see cref="Initialize"/>.</summary>
    protected HandlerContext Context => _context ?? throw new InvalidOperationException("the handler is not initialised");

    /// <summary>The ONNX Runtime session on the archive's serializedFile (null when the manifest names none).</summary>
    protected InferenceSession? Session { get; private set; }

    /// <summary>Opens the session. Override to read configuration, and call the base first.</summary>
    public virtual void Initialize(HandlerContext context)
    {
        _context = context;
        if (context.Manifest.SerializedFile is not { } file) return;
        InferenceSession Open() => OpenSession(context, context.PathOf(file));
        if (context.SharedSession is { } shared)
        {
            Session = shared.Acquire(Open);
            _shared = shared;
        }
        else
        {
            Session = Open();
        }
    }

    /// <summary>
    /// Opens the session on <paramref name="modelPath"/> (the archive's serializedFile) with
    /// <see cref="OrtSessionFactory"/>. Override to serve a graph rewritten at load (open it with
    /// <see cref="OrtSessionFactory.Create(byte[], string, SystemProperties, Microsoft.Extensions.Logging.ILogger)"/>);
    /// with <c>sharedSession: true</c> only the first worker's call opens it and the others receive that session.
    /// </summary>
    protected virtual InferenceSession OpenSession(HandlerContext context, string modelPath)
    {
        ArgumentNullException.ThrowIfNull(context);
        return OrtSessionFactory.Create(modelPath, context.SystemProperties, context.Logger);
    }

    /// <summary>Turns one request into model input. Throw <see cref="HandlerException"/> to reject it.</summary>
    protected abstract TInput Preprocess(InferenceRequest request);

    /// <summary>
    /// Runs the model on a batch of inputs; returns one output per input, in order. Override this one, or the one
    /// that takes the batch's cancellation token (preferred: it lets a timeout stop ONNX Runtime).
    /// </summary>
    protected virtual IReadOnlyList<TOutput> Inference(IReadOnlyList<TInput> inputs, IReadOnlyList<InferenceRequest> requests) =>
        throw new NotImplementedException($"{GetType().Name} must override one of the Inference methods");

    /// <summary>
    /// Runs the model on a batch of inputs with the batch's cancellation token (pass it to
    /// <see cref="OrtCancellation.Run"/>). By default calls the overload without a token.
    /// </summary>
    protected virtual IReadOnlyList<TOutput> Inference(IReadOnlyList<TInput> inputs, IReadOnlyList<InferenceRequest> requests, CancellationToken cancellationToken) =>
        Inference(inputs, requests);

    /// <summary>Turns one output into the response body.</summary>
    protected abstract HandlerOutput Postprocess(TOutput output, InferenceRequest request);

    /// <summary>
    /// TorchServe's <c>describe_handle</c>: the metadata <c>GET /models/{name}?customized=true</c> shows as
    /// <c>customizedMetadata</c> in the model's description (classes, training data, input size...). Runs on a worker,
    /// between batches. By default there is none, and describe shows no such field.
    /// </summary>
    protected virtual JsonObject? Describe() => null;

    /// <inheritdoc />
    public virtual Task<IReadOnlyList<HandlerOutput>> HandleAsync(IReadOnlyList<InferenceRequest> batch, CancellationToken cancellationToken)
    {
        if (batch is [{ IsDescribe: true }])
            return Task.FromResult<IReadOnlyList<HandlerOutput>>([DescribeOutput()]);

        var results = new HandlerOutput[batch.Count];
        var inputs = new List<TInput>(batch.Count);
        var live = new List<int>(batch.Count);
        for (var i = 0; i < batch.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var request = batch[i];
            var (started, split) = (request.Clock.GetTimestamp(), request.GetStageTicks(RequestStage.Decode));
            try
            {
                inputs.Add(Preprocess(request));
                live.Add(i);
            }
            catch (Exception e)
            {
                results[i] = Fail(request, e);
            }
            HookTime(request, RequestStage.Preprocess, started, RequestStage.Decode, split);
        }

        if (live.Count == 0) return Task.FromResult<IReadOnlyList<HandlerOutput>>(results);

        var liveRequests = new InferenceRequest[live.Count];
        for (var k = 0; k < live.Count; k++) liveRequests[k] = batch[live[k]];
        IReadOnlyList<TOutput>? outputs = null;
        try
        {
            var running = liveRequests[0].Clock.GetTimestamp();
            outputs = Inference(inputs, liveRequests, cancellationToken);
            // The batch's run is every one of its requests' inference time.
            var ran = liveRequests[0].Clock.GetTimestamp() - running;
            foreach (var request in liveRequests) request.AddStageTicks(RequestStage.Inference, ran);
            if (outputs.Count != live.Count)
                throw new InvalidOperationException($"Inference returned {outputs.Count} outputs for {live.Count} inputs");
        }
        catch (Exception e)
        {
            Release(inputs, outputs);
            if (e is OperationCanceledException) throw;
            foreach (var i in live) results[i] = Fail(batch[i], e);
            return Task.FromResult<IReadOnlyList<HandlerOutput>>(results);
        }

        if (!PostprocessConcurrently) return Task.FromResult<IReadOnlyList<HandlerOutput>>(Finish(batch, live, inputs, outputs, results, cancellationToken));

        // At most one batch postprocesses behind the model's run, in order: wait for the one before (its requests
        // already have their answers or its error), so outputs holding ONNX Runtime's buffers cannot pile up.
        try
        {
            _postprocessing.Wait(CancellationToken.None);
        }
        catch (AggregateException)
        {
        }
        var finishing = Task.Run<IReadOnlyList<HandlerOutput>>(() => Finish(batch, live, inputs, outputs, results, cancellationToken), CancellationToken.None);
        _postprocessing = finishing;
        return finishing;
    }

    /// <summary>
    /// True when <see cref="Postprocess"/> reads only its output, its request and what <see cref="Initialize"/> set up,
    /// so it may run on a pool thread while this handler preprocesses and runs the next batch. The worker then hands
    /// over the next batch as soon as <c>Inference</c> returns, and the per-pixel work after a run overlaps the next
    /// run instead of following it. False by default: a handler written for TorchServe's one-hook-at-a-time worker
    /// may keep state across hooks. Outputs must not share buffers that the next <c>Inference</c> overwrites.
    /// </summary>
    protected virtual bool PostprocessConcurrently => false;

    /// <inheritdoc />
    bool IModelHandler.OverlapsBatches => PostprocessConcurrently;

    // Postprocess for each live request (a request that fails here fails alone), then release inputs and outputs.
    private HandlerOutput[] Finish(IReadOnlyList<InferenceRequest> batch, List<int> live, List<TInput> inputs, IReadOnlyList<TOutput> outputs, HandlerOutput[] results, CancellationToken cancellationToken)
    {
        try
        {
            cancellationToken.ThrowIfCancellationRequested(); // nobody waits for these answers any more
            for (var k = 0; k < live.Count; k++)
            {
                var request = batch[live[k]];
                var (started, split) = (request.Clock.GetTimestamp(), request.GetStageTicks(RequestStage.Serialize));
                try
                {
                    results[live[k]] = Postprocess(outputs[k], request);
                }
                catch (Exception e)
                {
                    results[live[k]] = Fail(request, e);
                }
                HookTime(request, RequestStage.Postprocess, started, RequestStage.Serialize, split);
            }
            return results;
        }
        finally
        {
            Release(inputs, outputs);
        }
    }

    private static void Release(List<TInput> inputs, IReadOnlyList<TOutput>? outputs)
    {
        foreach (var input in inputs) (input as IDisposable)?.Dispose();
        if (outputs is null) return;
        foreach (var output in outputs) (output as IDisposable)?.Dispose();
    }

    // A hook's time is its own stage's, less what the handler reported inside it as another (decode, serialize).
    private static void HookTime(InferenceRequest request, RequestStage hook, long started, RequestStage part, long partBefore)
    {
        var elapsed = request.Clock.GetTimestamp() - started;
        request.AddStageTicks(hook, elapsed - (request.GetStageTicks(part) - partBefore));
    }

    private HandlerOutput DescribeOutput()
    {
        if (Describe() is not { } metadata) return HandlerOutput.JsonBytes(ReadOnlyMemory<byte>.Empty);
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer)) metadata.WriteTo(json);
        return HandlerOutput.JsonBytes(buffer.ToArray());
    }

    /// <summary>Maps a hook's exception to this request's error response.</summary>
    protected virtual HandlerOutput Fail(InferenceRequest request, Exception exception)
    {
        var output = exception is HandlerException h
            ? HandlerOutput.Error(h.StatusCode, h.Message)
            : HandlerOutput.Error(503, $"Prediction failed: {exception.Message}", "InternalServerException");
        request.Response.StatusCode = output.StatusCode!.Value;
        return output;
    }

    /// <summary>Releases the session (a shared one is freed by the last of its workers).</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Override to release what the handler owns; call the base.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            // A batch still postprocessing reads outputs of this handler's session: let it finish first.
            try
            {
                _postprocessing.Wait(CancellationToken.None);
            }
            catch (AggregateException)
            {
            }
            // A shared session is the model's: this worker only lets go of it (the last one frees it).
            if (_shared is not null) _shared.Release();
            else Session?.Dispose();
            _shared = null;
            Session = null;
        }
    }
}
