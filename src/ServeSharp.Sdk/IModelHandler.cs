namespace ServeSharp.Sdk;

/// <summary>
/// The contract between a worker and its handler. Each worker owns one instance: <see cref="Initialize"/>
/// once, then <see cref="HandleAsync"/> for every batch, then <see cref="IDisposable.Dispose"/>.
/// Most handlers derive from <see cref="BaseHandler{TInput,TOutput}"/> rather than implement this directly.
/// </summary>
public interface IModelHandler : IDisposable
{
    /// <summary>Loads the model (TorchServe's <c>initialize(context)</c>). Throwing fails the worker's start.</summary>
    void Initialize(HandlerContext context);

    /// <summary>
    /// Runs one batch (TorchServe's <c>handle(data, context)</c>) and returns exactly one output per request,
    /// in the order of <paramref name="batch"/>.
    /// </summary>
    Task<IReadOnlyList<HandlerOutput>> HandleAsync(IReadOnlyList<InferenceRequest> batch, CancellationToken cancellationToken);

    /// <summary>
    /// False (the default): the worker waits for the task <see cref="HandleAsync"/> returns before it takes its next
    /// batch, so a handler's batches never overlap. True: that task may still be finishing a batch (its postprocess)
    /// when the worker hands this handler the next one; <see cref="BaseHandler{TInput,TOutput}"/> says so for handlers
    /// that set its PostprocessConcurrently.
    /// </summary>
    bool OverlapsBatches => false;
}
