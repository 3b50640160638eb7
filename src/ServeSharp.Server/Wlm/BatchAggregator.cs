using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using ServeSharp.Server.Metrics;

namespace ServeSharp.Server.Wlm;

/// <summary>
/// The one reader of a model version's job queue (TorchServe's BatchAggregator, one per model): it waits until a
/// job is queued and a worker is free, then takes that first job and more, until batchSize or maxBatchDelay after
/// the first, and hands the whole batch to the free worker. Forming a batch only once a worker is free lets jobs
/// that arrive while every worker computes pile up into full batches instead of leaving as singles. A describe job
/// (TorchServe's DESCRIBE command) is always a batch of its own: met while a batch fills, it closes that batch and
/// waits, first in line, for the next worker.
/// </summary>
internal sealed partial class BatchAggregator
{
    private readonly Model _model;
    private readonly Channel<Job> _queue;
    private readonly Channel<WorkerThread> _idle = Channel.CreateUnbounded<WorkerThread>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ServerMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly object _heldGate = new();
    private List<Job>? _held;
    private Job? _carried; // a describe job that closed the batch before it; it starts the next one

    public BatchAggregator(Model model, int capacity, ServerMetrics metrics, TimeProvider time, ILogger logger)
    {
        _model = model;
        Capacity = capacity;
        // Bounded and written with TryWrite: a full queue answers 503 at once instead of holding the client. A job whose
        // client left keeps its slot until the loop reads past it. Not single-reader: FailWaiting drains it too.
        _queue = Channel.CreateBounded<Job>(new BoundedChannelOptions(capacity) { FullMode = BoundedChannelFullMode.Wait });
        _metrics = metrics;
        _time = time;
        _logger = logger;
    }

    public int Capacity { get; }
    public int Pending => _queue.Reader.Count + (Volatile.Read(ref _carried) is null ? 0 : 1);

    /// <summary>Queues a job; false when the queue is full or closed.</summary>
    public bool TryAdmit(Job job) => _queue.Writer.TryWrite(job);

    /// <summary>A worker is free: the next batch may go to it.</summary>
    public void WorkerIdle(WorkerThread worker) => _idle.Writer.TryWrite(worker);

    /// <summary>Closes the queue: nothing more is admitted.</summary>
    public void Close() => _queue.Writer.TryComplete();

    /// <summary>Answers every job still waiting (queued, or held for a worker) with the error given.</summary>
    public void FailWaiting(int status, string message, string type)
    {
        while (_queue.Reader.TryRead(out var job)) job.TryFail(status, message, type);
        lock (_heldGate)
        {
            _carried?.TryFail(status, message, type);
            if (_held is null) return;
            foreach (var job in _held) job.TryFail(status, message, type);
        }
    }

    /// <summary>The loop; ends when the queue is closed and empty, or on <paramref name="stop"/>.</summary>
    public async Task RunAsync(CancellationToken stop)
    {
        try
        {
            while (Volatile.Read(ref _carried) is not null || await _queue.Reader.WaitToReadAsync(stop))
            {
                var worker = await NextFreeWorkerAsync(stop);
                var batch = new List<Job>(_model.Settings.BatchSize);
                if (!TakeLive(batch, 1))
                {
                    _idle.Writer.TryWrite(worker); // every queued job had been answered already (client gone)
                    continue;
                }
                lock (_heldGate) _held = batch;
                var first = _time.GetTimestamp();
                await FillAsync(batch, first, stop);
                await DispatchAsync(worker, batch, first, stop);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    private async Task<WorkerThread> NextFreeWorkerAsync(CancellationToken stop)
    {
        while (true)
        {
            var worker = await _idle.Reader.ReadAsync(stop);
            if (worker.State == WorkerState.Ready) return worker; // retired and failed workers drop out here
        }
    }

    private bool TakeLive(List<Job> batch, int wanted)
    {
        while (batch.Count < wanted && !(batch.Count > 0 && batch[0].IsDescribe) && TryNext(out var job))
        {
            if (job.IsCompleted) continue;
            if (job.IsDescribe && batch.Count > 0)
            {
                lock (_heldGate) _carried = job;
                break;
            }
            job.Request.EndStage(Sdk.RequestStage.QueueWait, _time.GetTimestamp());
            batch.Add(job);
        }
        return batch.Count > 0;
    }

    private bool TryNext(out Job job)
    {
        lock (_heldGate)
        {
            if (_carried is { } carried)
            {
                _carried = null;
                job = carried;
                return true;
            }
        }
        return _queue.Reader.TryRead(out job!);
    }

    private async Task FillAsync(List<Job> batch, long first, CancellationToken stop)
    {
        var settings = _model.Settings;
        if (batch.Count >= settings.BatchSize || batch[0].IsDescribe) return;
        var delay = TimeSpan.FromMilliseconds(settings.MaxBatchDelayMs);
        while (true)
        {
            TakeLive(batch, settings.BatchSize);
            if (batch.Count >= settings.BatchSize || Volatile.Read(ref _carried) is not null) return;
            var remaining = delay - _time.GetElapsedTime(first);
            if (remaining <= TimeSpan.Zero) return;
            using var wait = new CancellationTokenSource(remaining, _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(stop, wait.Token);
            try
            {
                if (!await _queue.Reader.WaitToReadAsync(linked.Token)) return;
            }
            catch (OperationCanceledException) when (!stop.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private async Task DispatchAsync(WorkerThread worker, List<Job> batch, long first, CancellationToken stop)
    {
        while (true)
        {
            batch.RemoveAll(j => j.IsCompleted); // clients that left while the batch filled
            if (batch.Count == 0)
            {
                _idle.Writer.TryWrite(worker);
                break;
            }
            if (worker.TryRun(batch))
            {
                if (!batch[0].IsDescribe) _metrics.BatchFormed(_model.Name, _model.Version, batch.Count);
                var waited = _time.GetElapsedTime(first).TotalMilliseconds;
                LogBatch(_logger, _model.Name, _model.Version, batch.Count, worker.Id, waited);
                break;
            }
            worker = await NextFreeWorkerAsync(stop); // that worker was retired while the batch filled
        }
        lock (_heldGate) _held = null;
    }

    [LoggerMessage(EventId = 1001, Level = LogLevel.Debug, Message = "Model {Model} version {Version}: batch of {Size} to worker {WorkerId}, {WaitedMs:0.0} ms after its first job")]
    private static partial void LogBatch(ILogger logger, string model, string version, int size, string workerId, double waitedMs);
}
