using ServeSharp.Sdk;

namespace ServeSharp.Server.Wlm;

/// <summary>How a worker's handler is isolated from the server (model-config <c>workerIsolation</c>).</summary>
internal enum WorkerIsolation { InProcess, Process }

/// <summary>
/// Where a <see cref="WorkerThread"/>'s handler lives: in the server's own process (<see cref="InProcessBackend"/>)
/// or in a child process (<see cref="Workers.ProcessBackend"/>). The worker thread, the aggregator, the state
/// machine and the metrics are the same for both; only loading, running and stopping differ.
/// </summary>
internal interface IWorkerBackend : IDisposable
{
    /// <summary>The process the handler runs in (the server's own for in-process workers); 0 before it started.</summary>
    int ProcessId { get; }

    /// <summary>Resident memory of the handler's process in bytes, or null when it is the server's own.</summary>
    long? ResidentBytes { get; }

    /// <summary>Raised at most once when the backend dies by itself (its process exited, stopped answering, outgrew its memory limit).</summary>
    Action<string>? Died { get; set; }

    /// <summary>True when <see cref="Kill"/> really stops a handler that ignores cancellation (a process can be killed, a thread cannot).</summary>
    bool CanKill { get; }

    /// <summary>
    /// Creates and initialises the handler; runs on the worker's thread. Throws on failure. There is no token:
    /// a load that must end early (startupTimeout, unregister) ends through <see cref="Kill"/>.
    /// </summary>
    void Load(HandlerContext context);

    /// <summary>Runs one batch on the worker's thread and returns one output per request.</summary>
    /// <exception cref="WorkerDiedException">The backend died while the batch ran.</exception>
    IReadOnlyList<HandlerOutput> Run(InferenceRequest[] batch, CancellationToken cancellationToken);

    /// <summary>
    /// Starts one batch on the worker's thread. The task may still be running when this returns: the handler then
    /// finishes the batch off the worker's thread (see BaseHandler's PostprocessConcurrently) and the worker is free
    /// for the next one. By default the batch runs to its end here.
    /// </summary>
    Task<IReadOnlyList<HandlerOutput>> Start(InferenceRequest[] batch, CancellationToken cancellationToken)
    {
        try
        {
            return Task.FromResult(Run(batch, cancellationToken));
        }
        catch (Exception e)
        {
            return Task.FromException<IReadOnlyList<HandlerOutput>>(e);
        }
    }

    /// <summary>Stops the handler the hard way, where possible (see <see cref="CanKill"/>).</summary>
    void Kill(string reason);

    /// <summary>A graceful stop: the handler is disposed (in its process) and the process exits.</summary>
    void Stop(TimeSpan grace);
}

/// <summary>The worker's backend died (process exit, lost heartbeat, memory limit) while it held a batch.</summary>
internal sealed class WorkerDiedException(string reason) : Exception(reason);

/// <summary>The handler runs on the worker's own thread in the server process: the fast path, for our own handlers.</summary>
internal sealed class InProcessBackend(Loader.HandlerFactory factory) : IWorkerBackend
{
    private IModelHandler? _handler;

    public int ProcessId => Environment.ProcessId;
    public long? ResidentBytes => null;
    public Action<string>? Died { get; set; }
    public bool CanKill => false;

    public void Load(HandlerContext context)
    {
        _handler = factory.Create();
        _handler.Initialize(context);
    }

    public IReadOnlyList<HandlerOutput> Run(InferenceRequest[] batch, CancellationToken cancellationToken) =>
        Start(batch, cancellationToken).GetAwaiter().GetResult();

    public Task<IReadOnlyList<HandlerOutput>> Start(InferenceRequest[] batch, CancellationToken cancellationToken)
    {
        var handling = _handler!.HandleAsync(batch, cancellationToken);
        // A handler whose batches must not overlap holds the worker until its task ends, however it waits inside.
        return _handler.OverlapsBatches ? handling : Task.FromResult(handling.GetAwaiter().GetResult());
    }

    public void Kill(string reason)
    {
    }

    public void Stop(TimeSpan grace)
    {
    }

    public void Dispose() => _handler?.Dispose();
}
