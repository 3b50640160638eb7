using Microsoft.Extensions.Logging;
using ServeSharp.Loader;
using ServeSharp.Sdk;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Logging;
using ServeSharp.Server.Metrics;
using ServeSharp.Server.Workers;

namespace ServeSharp.Server.Wlm;

/// <summary>
/// Owns the worker pools (TorchServe's WorkLoadManager): brings a model to a target worker count, replaces workers
/// that fail or die with TorchServe's back-off, drains workers it removes, hands out GPU ids round-robin (over
/// deviceIds if given, else over number_of_gpu) and plans ONNX Runtime threads across every model.
/// </summary>
internal sealed partial class WorkLoadManager(ServerConfig config, ServerFolders folders, HandlerResolver resolver, ServerMetrics metrics, TimeProvider time, ILoggerFactory loggers)
{
    // TorchServe's back-off between attempts to bring a failed worker back, in seconds (reset by a load that works).
    private static readonly int[] BackOff = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597];

    private readonly ILogger _logger = loggers.CreateLogger("ServeSharp.WorkLoadManager");
    private readonly object _gate = new();
    private readonly HashSet<Model> _models = [];
    private int _gpuCounter;

    /// <summary>The back-off delay before attempt number <paramref name="failures"/> + 1.</summary>
    public static TimeSpan BackOffAfter(int failures) => TimeSpan.FromSeconds(BackOff[Math.Clamp(failures, 0, BackOff.Length - 1)]);

    /// <summary>Starts the model's aggregator; its workers come with <see cref="ScaleAsync"/>.</summary>
    public void Add(Model model)
    {
        lock (_gate) _models.Add(model);
        model.StartAggregating();
    }

    /// <summary>
    /// Brings <paramref name="model"/> to its minWorkers live workers, as they are when its turn comes: of two scale
    /// requests, the later one's count wins, whichever runs first. New workers load in parallel
    /// (a failed one is retried with back-off); removed workers, newest first, finish the batch in hand.
    /// Returns how many of the new workers loaded, and why the first that did not failed. A replacement names the worker it replaces (<paramref name="replacing"/>),
    /// so describe can show the slot's restarts and why its last worker left.
    /// </summary>
    public async Task<(int Loaded, string? Failure)> ScaleAsync(Model model, CancellationToken cancellationToken, WorkerThread? replacing = null)
    {
        await model.ScaleGate.WaitAsync(cancellationToken);
        List<WorkerThread> starting = [];
        List<WorkerThread> retiring = [];
        List<WorkerThread> loading;
        try
        {
            var target = model.Settings.MinWorkers;
            var live = model.Workers.Where(w => w.IsLive).ToList();
            loading = [.. live.Where(w => w.State == WorkerState.Loading)];
            for (var i = live.Count; i < target && model.State is not (ModelState.Draining or ModelState.Unloaded); i++)
                starting.Add(NewWorker(model, i == live.Count ? replacing : null));
            if (live.Count > target) retiring = [.. live.OrderByDescending(w => w.StartTime).ThenByDescending(w => w.Id).Take(live.Count - target)];
            foreach (var w in retiring) _ = w.RetireAsync();
        }
        finally
        {
            model.ScaleGate.Release();
        }

        var loads = starting.Select(w => StartAsync(model, w, cancellationToken)).ToList();
        var loaded = (await Task.WhenAll(loads)).Count(ok => ok);
        // Workers an earlier request started count toward this one: it answers when they have loaded (or failed) too.
        foreach (var w in loading) await Task.WhenAny(w.Started, w.Ended).WaitAsync(cancellationToken);
        starting.AddRange(loading.Where(w => w.State == WorkerState.Failed));
        await Task.WhenAll(retiring.Select(async w =>
        {
            await w.Ended;
            model.Remove(w);
        }));
        if (model.LiveWorkerCount == 0) FailWaiting(model);
        // Read from the workers themselves: a failed one may already have left the model for its replacement.
        return (loaded, starting.Select(w => w.FailureReason).FirstOrDefault(r => r is not null));
    }

    /// <summary>
    /// Unregister: no admission, queued jobs answered with TorchServe's error, running batches finish within
    /// <paramref name="drainTimeout"/> (then their workers are abandoned), handlers disposed.
    /// </summary>
    public async Task DrainAsync(Model model, TimeSpan drainTimeout)
    {
        model.TryMove(ModelState.Draining, ModelState.Loading, ModelState.Ready, ModelState.Failed);
        model.Aggregator.Close();
        await model.Aggregating;
        model.Aggregator.FailWaiting(503, $"Model \"{model.Name}\" version {model.Version} was unregistered before this request ran", "ServiceUnavailableException");
        await model.ScaleGate.WaitAsync();
        try
        {
            var workers = model.Workers;
            var stopped = Task.WhenAll(workers.Select(w => w.RetireAsync()));
            try
            {
                await stopped.WaitAsync(drainTimeout, time);
            }
            catch (TimeoutException)
            {
                foreach (var w in workers.Where(w => !w.Ended.IsCompleted)) w.Abandon($"still running {drainTimeout.TotalSeconds:0}s after unregister");
            }
            foreach (var w in workers) model.Remove(w);
        }
        finally
        {
            model.ScaleGate.Release();
        }
        lock (_gate) _models.Remove(model);
        model.TryMove(ModelState.Draining, ModelState.Unloaded);
    }

    private WorkerThread NewWorker(Model model, WorkerThread? replacing)
    {
        var settings = model.Settings;
        var gpu = AssignGpu(model, settings);
        int planned;
        lock (_gate) planned = _models.Sum(m => m == model ? Math.Max(m.Settings.MinWorkers, 1) : m.Settings.MinWorkers);
        var logger = loggers.CreateLogger($"ServeSharp.Model.{model.Name}");
        // What the handler logs, and what a worker process prints, is the model log (TorchServe's MODEL_LOG); what the
        // server says about the worker stays in the server's log.
        var modelLog = loggers.CreateLogger(LogFiles.ModelLog);
        var context = HandlerContexts.For(model.Archive, new SystemProperties
        {
            BatchSize = settings.BatchSize,
            DeviceType = gpu is null ? "cpu" : "gpu",
            GpuId = gpu,
            IntraOpThreads = ThreadPlanner.IntraOpThreads(Environment.ProcessorCount, planned, model.Archive.Config.Handler.GetInt("intra_op_threads")),
            InterOpThreads = 1,
        }, modelLog, model.Name, model.Version,
            // A session cannot cross into a worker process: those keep one each.
            settings.SharedSession && settings.Isolation == WorkerIsolation.InProcess ? model.SharedSessionFor(gpu, modelLog) : null);
        var id = WorkerThread.NextId();
        IWorkerBackend backend = settings.Isolation == WorkerIsolation.Process
            ? new ProcessBackend(new ProcessWorkerOptions($"W-{id}-{model.Name}", folders.WorkerSockets, model.HandlerOverride, resolver.CompiledCache, config.WorkerUser, settings.MaxWorkerMemoryMB), time, logger, modelLog)
            : new InProcessBackend(model.Factory);
        var worker = new WorkerThread(id, model, backend, context, metrics, time, logger)
        {
            Idle = model.Aggregator.WorkerIdle,
            Isolation = settings.Isolation,
            Restarts = replacing is null ? 0 : replacing.Restarts + 1,
            LastExitReason = replacing?.FailureReason ?? replacing?.LastExitReason,
            FallbackReason = settings.FallbackReason,
        };
        model.Add(worker);
        return worker;
    }

    // Loads one worker; on failure leaves it listed as FAILED (describe shows why) and schedules its replacement.
    private async Task<bool> StartAsync(Model model, WorkerThread worker, CancellationToken cancellationToken)
    {
        try
        {
            await worker.StartAsync(TimeSpan.FromSeconds(model.Settings.StartupTimeoutSeconds), cancellationToken);
            model.ResetFailures();
            model.TryMove(ModelState.Ready, ModelState.Loading, ModelState.Failed);
            _ = SuperviseAsync(model, worker);
            return true;
        }
        catch (Exception e) when (e is InternalServerException or OperationCanceledException)
        {
            OnWorkerLost(model, worker);
            return false;
        }
    }

    // A loaded worker's life: when it ends without being retired (abandoned after a timeout), it is replaced.
    private async Task SuperviseAsync(Model model, WorkerThread worker)
    {
        await worker.Ended;
        if (worker.State == WorkerState.Failed) OnWorkerLost(model, worker);
    }

    private void OnWorkerLost(Model model, WorkerThread dead)
    {
        if (model.State is ModelState.Draining or ModelState.Unloaded) return;
        var failures = model.RecordFailure(time.GetTimestamp());
        metrics.WorkerLost(model.Name, model.Version);
        if (model.LiveWorkerCount == 0)
        {
            model.TryMove(ModelState.Failed, ModelState.Loading, ModelState.Ready);
            FailWaiting(model);
        }
        _ = ReplaceAsync(model, dead, BackOffAfter(failures));
    }

    // The dead worker stays listed (FAILED, with its reason) until its replacement is; the exception has a home: the log.
    private async Task ReplaceAsync(Model model, WorkerThread dead, TimeSpan delay)
    {
        try
        {
            LogRetry(_logger, model.Name, dead.Id, delay.TotalSeconds, dead.FailureReason ?? "");
            await Task.Delay(delay, time, model.Lifetime);
            var wanted = model.Settings.MinWorkers;
            if (model.LiveWorkerCount < wanted)
            {
                model.Remove(dead);
                await ScaleAsync(model, model.Lifetime, dead);
            }
            else
            {
                model.Remove(dead);
            }
        }
        catch (OperationCanceledException) when (model.Lifetime.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            LogReplaceFailed(_logger, model.Name, e);
        }
    }

    private static void FailWaiting(Model model) =>
        model.Aggregator.FailWaiting(503, $"Model \"{model.Name}\" has no worker to serve inference request. Please use scale workers API to add workers.", "ServiceUnavailableException");

    // TorchServe's rule (WorkLoadManager.addThreads); registration (DevicePlanner) already made sure a gpu model can have one.
    private int? AssignGpu(Model model, WorkerSettings settings)
    {
        if (settings.DeviceType != "gpu") return null;
        if (settings.DeviceIds.Count > 0) return settings.DeviceIds[model.NextDeviceIndex(settings.DeviceIds.Count)];
        return config.NumberOfGpu is > 0 and var gpus ? GpuAssignment.NextShared(ref _gpuCounter, gpus) : null;
    }

    [LoggerMessage(EventId = 3001, Level = LogLevel.Warning, Message = "Model {Model}: worker {WorkerId} is out of service ({Reason}); retrying in {Seconds}s")]
    private static partial void LogRetry(ILogger logger, string model, string workerId, double seconds, string reason);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Error, Message = "Model {Model}: could not replace a worker")]
    private static partial void LogReplaceFailed(ILogger logger, string model, Exception error);
}
