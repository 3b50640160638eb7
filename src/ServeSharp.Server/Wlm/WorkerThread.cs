using System.Diagnostics;
using Microsoft.Extensions.Logging;
using ServeSharp.Sdk;
using ServeSharp.Server.Metrics;

namespace ServeSharp.Server.Wlm;

public enum WorkerStatus { Loading, Ready, Stopping, Stopped, Failed }

/// <summary>
/// One worker: its own handler instance, a loop that takes a batch from the model's queue (the first job,
/// then up to maxBatchDelay for batchSize jobs — TorchServe's BatchAggregator), runs it, and answers each job.
/// A batch that overruns responseTimeout is answered with an error and the worker retires, to be replaced.
/// </summary>
public sealed partial class WorkerThread
{
    private static int _nextId = 9000;

    private readonly Model _model;
    private readonly ServerMetrics _metrics;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private IModelHandler? _handler;
    private Task _loop = Task.CompletedTask;

    public WorkerThread(Model model, int? gpuId, ServerMetrics metrics, ILogger logger)
    {
        _model = model;
        GpuId = gpuId;
        _metrics = metrics;
        _logger = logger;
        Id = Interlocked.Increment(ref _nextId).ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    public string Id { get; }
    public DateTimeOffset StartTime { get; } = DateTimeOffset.UtcNow;
    public int? GpuId { get; }
    public WorkerStatus Status { get; private set; } = WorkerStatus.Loading;

    /// <summary>Raised when the worker retires because a batch timed out, so the pool can replace it.</summary>
    public event Action<WorkerThread>? TimedOut;

    /// <summary>The loop's task; completes when the worker has stopped.</summary>
    public Task Completion => _loop;

    /// <summary>Creates and initialises the handler (within startupTimeout), then starts taking jobs.</summary>
    public async Task StartAsync(HandlerContext context, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var settings = _model.Settings;
        try
        {
            var init = Task.Run(() =>
            {
                var handler = _model.Factory.Create();
                try
                {
                    handler.Initialize(context);
                    return handler;
                }
                catch
                {
                    handler.Dispose();
                    throw;
                }
            }, cancellationToken);
            _handler = await init.WaitAsync(TimeSpan.FromSeconds(settings.StartupTimeoutSeconds), cancellationToken);
        }
        catch (Exception e)
        {
            Status = WorkerStatus.Failed;
            LogLoadFailed(_logger, _model.Name, Id, e);
            throw;
        }

        _metrics.WorkerLoaded($"W-{Id}-{_model.Name}_{_model.Version}", Stopwatch.GetElapsedTime(started));
        Status = WorkerStatus.Ready;
        _loop = Task.Run(() => RunAsync(_stop.Token), CancellationToken.None);
    }

    /// <summary>Stops taking jobs; the batch in hand finishes. Jobs still queued stay for the other workers.</summary>
    public Task StopAsync()
    {
        if (Status is WorkerStatus.Loading or WorkerStatus.Ready) Status = WorkerStatus.Stopping;
        _stop.Cancel();
        return _loop;
    }

    private async Task RunAsync(CancellationToken stop)
    {
        var reader = _model.Queue.Reader;
        var batch = new List<Job>();
        try
        {
            while (!stop.IsCancellationRequested)
            {
                batch.Clear();
                Job first;
                try
                {
                    first = await reader.ReadAsync(stop);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                catch (System.Threading.Channels.ChannelClosedException)
                {
                    break;
                }
                batch.Add(first);
                await AggregateAsync(reader, batch, stop);
                if (!await RunBatchAsync(batch)) return;
            }
        }
        finally
        {
            if (Status != WorkerStatus.Failed)
            {
                Status = WorkerStatus.Stopped;
                _handler?.Dispose();
            }
        }
    }

    /// <summary>Fills the batch up to batchSize, waiting at most maxBatchDelay after the first job.</summary>
    private async Task AggregateAsync(System.Threading.Channels.ChannelReader<Job> reader, List<Job> batch, CancellationToken stop)
    {
        var settings = _model.Settings;
        if (settings.BatchSize <= 1) return;
        var deadline = Stopwatch.GetTimestamp() + (long)(settings.MaxBatchDelayMs / 1000.0 * Stopwatch.Frequency);
        while (batch.Count < settings.BatchSize)
        {
            if (reader.TryRead(out var job))
            {
                batch.Add(job);
                continue;
            }
            var remaining = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline);
            if (remaining <= TimeSpan.Zero) break;
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(stop);
            wait.CancelAfter(remaining);
            try
            {
                if (!await reader.WaitToReadAsync(wait.Token)) break;
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    /// <summary>Runs one batch; false when it timed out and this worker must retire.</summary>
    private async Task<bool> RunBatchAsync(List<Job> batch)
    {
        var settings = _model.Settings;
        var dequeued = Stopwatch.GetTimestamp();
        var requests = new InferenceRequest[batch.Count];
        for (var i = 0; i < batch.Count; i++) requests[i] = batch[i].Request;

        var handler = _handler!;
        // The handler computes for tens of milliseconds: on a thread of its own (as each TorchServe worker is a
        // process of its own), so busy workers never hold the thread pool that Kestrel's I/O runs on.
        var run = Task.Factory.StartNew(() => handler.HandleAsync(requests, CancellationToken.None), CancellationToken.None,
            TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
        try
        {
            var outputs = await run.WaitAsync(TimeSpan.FromSeconds(settings.ResponseTimeoutSeconds));
            var handlerTime = Stopwatch.GetElapsedTime(dequeued);
            if (outputs.Count != batch.Count)
                throw new InvalidOperationException($"handler returned {outputs.Count} responses for a batch of {batch.Count}");

            var answered = Stopwatch.GetTimestamp();
            for (var i = 0; i < batch.Count; i++)
            {
                var job = batch[i];
                job.TryComplete(JobResult.FromOutput(outputs[i], requests[i].Response));
                _metrics.InferenceCompleted(_model.Name, _model.Version, Stopwatch.GetElapsedTime(job.EnqueuedAt), Stopwatch.GetElapsedTime(job.EnqueuedAt, dequeued));
            }
            _metrics.BatchHandled(_model.Name, handlerTime, Stopwatch.GetElapsedTime(answered));
            return true;
        }
        catch (TimeoutException)
        {
            Status = WorkerStatus.Failed;
            foreach (var job in batch)
                job.TryFail(500, $"Prediction timed out: model {_model.Name} did not answer within {settings.ResponseTimeoutSeconds}s; the worker was replaced", "InternalServerException");
            LogTimedOut(_logger, _model.Name, Id, settings.ResponseTimeoutSeconds);
            // The handler may still be running: dispose it when (if) it returns, not under its feet.
            _ = run.ContinueWith(_ => handler.Dispose(), TaskScheduler.Default);
            TimedOut?.Invoke(this);
            return false;
        }
        catch (Exception e)
        {
            LogBatchFailed(_logger, _model.Name, Id, e);
            foreach (var job in batch) job.TryFail(503, $"Prediction failed: {e.Message}", "InternalServerException");
            return true;
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Worker {WorkerId} of model {Model} failed to load")]
    private static partial void LogLoadFailed(ILogger logger, string model, string workerId, Exception error);

    [LoggerMessage(Level = LogLevel.Error, Message = "Worker {WorkerId} of model {Model} timed out after {Seconds}s; replacing it")]
    private static partial void LogTimedOut(ILogger logger, string model, string workerId, int seconds);

    [LoggerMessage(Level = LogLevel.Error, Message = "Worker {WorkerId} of model {Model}: the handler failed a whole batch")]
    private static partial void LogBatchFailed(ILogger logger, string model, string workerId, Exception error);
}
