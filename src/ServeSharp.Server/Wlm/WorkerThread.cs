using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using ServeSharp.Sdk;
using ServeSharp.Server.Metrics;

namespace ServeSharp.Server.Wlm;

internal enum WorkerState { Loading, Ready, Busy, Stopping, Stopped, Failed }

/// <summary>
/// One worker: a dedicated, long-lived thread that owns one handler, through its <see cref="IWorkerBackend"/> (in
/// this process, or in a worker process of its own). It loads the handler, then runs the batches the model's
/// <see cref="BatchAggregator"/> hands it, one at a time, and tells the aggregator when it is free again. It never
/// reads the queue itself.
/// A batch that overruns responseTimeout is answered with an error at once and its token cancelled. A worker
/// process is then killed (its CPU comes back) and replaced, as TorchServe does. An in-process handler that honours
/// the token brings the worker back into service; one that does not within the grace period gets the worker
/// abandoned (its thread runs on; the pool replaces it).
/// </summary>
internal sealed partial class WorkerThread
{
    private static int _nextId = 9000;

    private readonly Model _model;
    private readonly IWorkerBackend _backend;
    private readonly HandlerContext _context;
    private readonly ServerMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Channel<List<Job>> _inbox = Channel.CreateBounded<List<Job>>(new BoundedChannelOptions(1) { SingleReader = true, SingleWriter = true });
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Thread _thread;
    private int _state = (int)WorkerState.Loading;
    private int _abandoned;
    private long _batchNumber;
    private Task _finishing = Task.CompletedTask;

    /// <summary>A new worker id (TorchServe numbers its workers from 9000).</summary>
    public static string NextId() => Interlocked.Increment(ref _nextId).ToString(System.Globalization.CultureInfo.InvariantCulture);

    public WorkerThread(string id, Model model, IWorkerBackend backend, HandlerContext context, ServerMetrics metrics, TimeProvider time, ILogger logger)
    {
        _model = model;
        _backend = backend;
        _context = context;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        Id = id;
        StartTime = time.GetUtcNow();
        _thread = new Thread(Run) { IsBackground = true, Name = $"W-{Id}-{model.Name}" };
    }

    public string Id { get; }
    public DateTimeOffset StartTime { get; }
    public int? GpuId => _context.SystemProperties.GpuId;

    /// <summary>"gpu" or "cpu": where the handler's sessions run.</summary>
    public string DeviceType => _context.SystemProperties.DeviceType;

    /// <summary>Why a worker TorchServe's rule would put on a GPU runs on CPU, for describe.</summary>
    public string? FallbackReason { get; init; }
    public int IntraOpThreads => _context.SystemProperties.IntraOpThreads;
    public WorkerState State => (WorkerState)Volatile.Read(ref _state);

    /// <summary>The process the handler runs in: a worker process's pid, or the server's own.</summary>
    public int ProcessId => _backend.ProcessId;

    /// <summary>A worker process's resident memory in bytes; null for in-process workers.</summary>
    public long? ResidentBytes => _backend.ResidentBytes;

    public WorkerIsolation Isolation { get; init; }

    /// <summary>How many workers this one replaces in a row (its slot's restarts), for describe.</summary>
    public int Restarts { get; init; }

    /// <summary>Why the worker this one replaces left service, for describe.</summary>
    public string? LastExitReason { get; init; }

    /// <summary>Why the worker failed (initialisation error, a handler that would not stop), for describe.</summary>
    public string? FailureReason { get; private set; }

    /// <summary>Loading, serving or finishing its last batch: counts toward the pool.</summary>
    public bool IsLive => State is WorkerState.Loading or WorkerState.Ready or WorkerState.Busy;

    /// <summary>Completes when the handler is initialised; faults when it failed or overran startupTimeout.</summary>
    public Task Started => _started.Task;

    /// <summary>Completes when the worker is out of service for good (stopped, failed, abandoned).</summary>
    public Task Ended => _ended.Task;

    /// <summary>Called on the worker's thread whenever it becomes free for a batch.</summary>
    public Action<WorkerThread>? Idle { get; set; }

    /// <summary>Starts the thread; the handler loads there (so its thread affinity, if any, holds for every batch).</summary>
    public async Task StartAsync(TimeSpan startupTimeout, CancellationToken cancellationToken)
    {
        if (startupTimeout <= TimeSpan.Zero)
        {
            // TorchServe gives such a worker no time to load, so it fails; decided here, not by a race with the load.
            Abandon("startupTimeout is 0s: the worker was given no time to load");
            _thread.Start(); // it sees the abandon before loading and releases its backend
            throw new InternalServerException($"Worker {Id} of model {_model.Name} did not load within 0s (startupTimeout)");
        }
        _thread.Start();
        try
        {
            await Started.WaitAsync(startupTimeout, _time, cancellationToken);
        }
        catch (TimeoutException)
        {
            // The thread may still be inside Initialize: it disposes the handler itself when (if) that returns.
            Abandon($"the handler did not initialise within startupTimeout ({startupTimeout.TotalSeconds:0}s)");
            throw new InternalServerException($"Worker {Id} of model {_model.Name} did not load within {startupTimeout.TotalSeconds:0}s");
        }
        catch (OperationCanceledException)
        {
            Abandon("registration was cancelled while the worker loaded");
            throw;
        }
    }

    /// <summary>Hands the worker a batch; false when the worker is not free (stopping, failed, or busy).</summary>
    public bool TryRun(List<Job> jobs)
    {
        if (Interlocked.CompareExchange(ref _state, (int)WorkerState.Busy, (int)WorkerState.Ready) != (int)WorkerState.Ready) return false;
        if (_inbox.Writer.TryWrite(jobs)) return true;
        Interlocked.CompareExchange(ref _state, (int)WorkerState.Ready, (int)WorkerState.Busy);
        return false;
    }

    /// <summary>Stops after the batch in hand (scale-down, unregister). Completes <see cref="Ended"/> when done.</summary>
    public Task RetireAsync()
    {
        // The state may move under us (a batch handed over, a load finishing): retry until it is Stopping or terminal.
        while (State is var s && s is WorkerState.Ready or WorkerState.Busy or WorkerState.Loading
               && Interlocked.CompareExchange(ref _state, (int)WorkerState.Stopping, (int)s) != (int)s)
        {
        }
        _inbox.Writer.TryComplete();
        return Ended;
    }

    /// <summary>
    /// Gives up on the worker: it is reported failed and leaves the pool now; its thread finishes (and disposes the
    /// handler) whenever the handler returns. An in-process handler cannot be killed, only left behind.
    /// </summary>
    public void Abandon(string reason)
    {
        if (Interlocked.Exchange(ref _abandoned, 1) == 1) return;
        FailureReason = reason;
        Volatile.Write(ref _state, (int)WorkerState.Failed);
        _inbox.Writer.TryComplete();
        _backend.Kill(reason); // a process worker's load or batch ends here; an in-process handler runs on
        LogAbandoned(_logger, _model.Name, Id, reason);
        _ended.TrySetResult();
    }

    private void Run()
    {
        _backend.Died = reason => Abandon(reason);
        try
        {
            if (Volatile.Read(ref _abandoned) == 1) return;
            var loading = _time.GetTimestamp();
            try
            {
                _backend.Load(_context);
            }
            catch (Exception e)
            {
                if (Volatile.Read(ref _abandoned) == 1) return;
                Fail($"initialisation failed: {e.Message}");
                LogLoadFailed(_logger, _model.Name, Id, e);
                _started.TrySetException(new InternalServerException($"Worker {Id} of model {_model.Name} failed to load: {e.Message}", e));
                return;
            }
            if (Volatile.Read(ref _abandoned) == 1) return;
            _metrics.WorkerLoaded($"W-{Id}-{_model.Name}_{_model.Version}", _time.GetElapsedTime(loading));
            Interlocked.CompareExchange(ref _state, (int)WorkerState.Ready, (int)WorkerState.Loading);
            _started.TrySetResult();

            var reader = _inbox.Reader;
            if (State == WorkerState.Ready) Idle?.Invoke(this);
            // A blocking wait is right here: this thread exists only to run this worker's batches.
            while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
            {
                if (!reader.TryRead(out var jobs)) continue;
                RunBatch(jobs);
                if (Volatile.Read(ref _abandoned) == 1) return;
                if (Interlocked.CompareExchange(ref _state, (int)WorkerState.Ready, (int)WorkerState.Busy) == (int)WorkerState.Busy)
                    Idle?.Invoke(this);
            }
        }
        finally
        {
            // A batch still finishing off this thread gets its answers before the handler goes.
            _finishing.Wait(CancellationToken.None);
            if (Volatile.Read(ref _abandoned) == 0) _backend.Stop(CancellationGrace);
            _backend.Dispose();
            if (State != WorkerState.Failed) Volatile.Write(ref _state, (int)WorkerState.Stopped);
            _started.TrySetException(new InternalServerException($"Worker {Id} of model {_model.Name} stopped before it loaded"));
            _ended.TrySetResult();
        }
    }

    private void Fail(string reason)
    {
        FailureReason = reason;
        Volatile.Write(ref _state, (int)WorkerState.Failed);
    }

    private void RunBatch(List<Job> jobs)
    {
        var settings = _model.Settings;
        var timeout = TimeSpan.FromSeconds(settings.ResponseTimeoutSeconds);
        var number = Interlocked.Increment(ref _batchNumber);
        var dispatched = _time.GetTimestamp();
        var batch = new Batch(jobs, timeout, _time);
        var onTimeout = batch.TimeoutToken.UnsafeRegister(_ => TimedOut(jobs, settings.ResponseTimeoutSeconds, number), null);
        var requests = new InferenceRequest[jobs.Count];
        for (var i = 0; i < jobs.Count; i++)
        {
            requests[i] = jobs[i].Request;
            requests[i].EndStage(RequestStage.BatchFormation, dispatched);
        }
        Task<IReadOnlyList<HandlerOutput>> running;
        try
        {
            running = _backend.Start(requests, batch.Token);
        }
        catch (Exception e)
        {
            running = Task.FromException<IReadOnlyList<HandlerOutput>>(e);
        }
        if (running.IsCompleted)
        {
            Answer(running, jobs, requests, batch, onTimeout, dispatched);
            return;
        }
        // The handler finishes this batch off our thread (its postprocess overlaps the next run): answer when it ends.
        // The batch, its token and its timeout stay alive until then; the worker is free for the next batch now.
        _finishing = running.ContinueWith(t => Answer(t, jobs, requests, batch, onTimeout, dispatched),
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private void Answer(Task<IReadOnlyList<HandlerOutput>> handled, List<Job> jobs, InferenceRequest[] requests, Batch batch, CancellationTokenRegistration onTimeout, long dispatched)
    {
        try
        {
            var outputs = handled.GetAwaiter().GetResult();
            var handlerTime = _time.GetElapsedTime(dispatched);
            if (outputs.Count != jobs.Count)
                throw new InvalidOperationException($"the handler returned {outputs.Count} responses for a batch of {jobs.Count}");
            var answered = _time.GetTimestamp();
            for (var i = 0; i < jobs.Count; i++)
            {
                var job = jobs[i];
                HandlerStages(job.Request, answered - dispatched);
                job.Request.MarkStage(answered); // the write stage starts with the answer
                if (job.TryComplete(JobResult.FromOutput(outputs[i], requests[i].Response)) && !job.IsDescribe)
                    _metrics.InferenceCompleted(_model.Name, job.VersionLabel, job.Protocol, _time.GetElapsedTime(job.EnqueuedAt), _time.GetElapsedTime(job.EnqueuedAt, dispatched));
            }
            _metrics.BatchHandled(_model.Name, handlerTime, _time.GetElapsedTime(answered), requests);
        }
        catch (OperationCanceledException) when (batch.Token.IsCancellationRequested)
        {
            // Timed out (the jobs were answered by TimedOut) or every client left: nobody waits for this batch.
            LogCancelled(_logger, _model.Name, Id, jobs.Count, batch.TimedOut ? "responseTimeout" : "every client disconnected");
        }
        catch (WorkerDiedException e)
        {
            // The process is gone (its Died already abandoned this worker); the pool replaces it.
            foreach (var job in jobs) job.TryFail(500, $"Worker died: {e.Message} (worker {Id} of model {_model.Name}, while running this request)", "InternalServerException");
        }
        catch (Exception e)
        {
            LogBatchFailed(_logger, _model.Name, Id, e);
            foreach (var job in jobs) job.TryFail(503, $"Prediction failed: {e.Message}", "InternalServerException");
        }
        finally
        {
            onTimeout.Dispose();
            batch.Dispose();
            // A late answer after a timeout is dropped by TryComplete; mark this batch over for the watchdog (a batch
            // finishing off the worker's thread may end after the next one started: the watchdog then sees the worker
            // moving, which it is).
            Interlocked.Increment(ref _batchNumber);
        }
    }

    // A handler that reports no stages of its own (one in a worker process, or an IModelHandler that times nothing)
    // still accounts for its time: all of it counts as inference.
    private static void HandlerStages(InferenceRequest request, long handlerTicks)
    {
        if (request.GetStageTicks(RequestStage.Decode) + request.GetStageTicks(RequestStage.Preprocess) + request.GetStageTicks(RequestStage.Inference)
            + request.GetStageTicks(RequestStage.Postprocess) + request.GetStageTicks(RequestStage.Serialize) == 0)
            request.AddStageTicks(RequestStage.Inference, handlerTicks);
    }

    // Runs on a timer thread when responseTimeout passes: answer now, then give the handler a grace period to
    // honour its token before the worker is abandoned.
    private void TimedOut(List<Job> jobs, int seconds, long number)
    {
        foreach (var job in jobs)
            job.TryFail(500, $"Prediction timed out: model {_model.Name} did not answer within {seconds}s (responseTimeout); the batch was cancelled", "InternalServerException");
        LogTimedOut(_logger, _model.Name, Id, seconds);
        if (_backend.CanKill)
        {
            Abandon($"the batch overran responseTimeout ({seconds}s); its process was killed");
            return;
        }
        ITimer? watchdog = null;
        watchdog = _time.CreateTimer(_ =>
        {
            watchdog?.Dispose();
            if (Interlocked.Read(ref _batchNumber) == number)
                Abandon($"the handler ignored cancellation for {CancellationGrace.TotalSeconds:0}s after responseTimeout");
        }, null, CancellationGrace, Timeout.InfiniteTimeSpan);
    }

    /// <summary>How long a cancelled handler has to return before its worker is given up on.</summary>
    public static TimeSpan CancellationGrace { get; } = TimeSpan.FromSeconds(5);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Error, Message = "Worker {WorkerId} of model {Model} failed to load")]
    private static partial void LogLoadFailed(ILogger logger, string model, string workerId, Exception error);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Error, Message = "Worker {WorkerId} of model {Model}: batch overran responseTimeout {Seconds}s; cancelling it")]
    private static partial void LogTimedOut(ILogger logger, string model, string workerId, int seconds);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Error, Message = "Worker {WorkerId} of model {Model}: the handler failed a whole batch")]
    private static partial void LogBatchFailed(ILogger logger, string model, string workerId, Exception error);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Warning, Message = "Worker {WorkerId} of model {Model}: batch of {Size} cancelled ({Reason}); back in service")]
    private static partial void LogCancelled(ILogger logger, string model, string workerId, int size, string reason);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Error, Message = "Worker {WorkerId} of model {Model} is out of service: {Reason}")]
    private static partial void LogAbandoned(ILogger logger, string model, string workerId, string reason);
}
