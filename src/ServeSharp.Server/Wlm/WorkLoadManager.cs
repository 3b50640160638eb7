using Microsoft.Extensions.Logging;
using ServeSharp.Sdk;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Metrics;

namespace ServeSharp.Server.Wlm;

/// <summary>
/// Owns the worker pools: starts and stops workers to reach a target count, hands out GPU ids round-robin
/// (TorchServe's rule: over deviceIds if given, else over number_of_gpu), and replaces workers that time out.
/// </summary>
public sealed partial class WorkLoadManager(ServerConfig config, ServerMetrics metrics, ILoggerFactory loggers)
{
    private readonly ILogger _logger = loggers.CreateLogger("ServeSharp.WorkLoadManager");
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Model, SemaphoreSlim> _scaleLocks = new();
    private int _gpuCounter;

    /// <summary>
    /// Brings <paramref name="model"/> to <paramref name="target"/> workers. New workers load in parallel; removed
    /// workers finish their batch first. Throws if no new worker could load.
    /// </summary>
    public async Task ScaleAsync(Model model, int target, CancellationToken cancellationToken)
    {
        var gate = _scaleLocks.GetOrAdd(model, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(cancellationToken);
        try
        {
            var active = model.Workers.Where(w => w.Status is WorkerStatus.Loading or WorkerStatus.Ready).ToList();
            if (active.Count < target)
            {
                var starting = new List<Task>();
                for (var i = active.Count; i < target; i++) starting.Add(StartWorkerAsync(model, target, cancellationToken));
                var all = Task.WhenAll(starting);
                try
                {
                    await all;
                }
                catch when (all.Exception is { } errors && starting.Any(t => t.IsCompletedSuccessfully))
                {
                    LogPartialScale(_logger, model.Name, starting.Count(t => t.IsCompletedSuccessfully), starting.Count, errors.InnerExceptions[0].Message);
                }
            }
            else if (active.Count > target)
            {
                // Retire the newest first, as TorchServe does; each finishes the batch in hand.
                var retiring = active.OrderByDescending(w => w.StartTime).Take(active.Count - target).ToList();
                await Task.WhenAll(retiring.Select(async w =>
                {
                    await w.StopAsync();
                    model.Remove(w);
                }));
            }
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>Stops every worker and fails whatever is still queued (the model is being unregistered or the server stops).</summary>
    public async Task StopAllAsync(Model model)
    {
        model.Retired = true;
        await ScaleAsync(model, 0, CancellationToken.None);
        model.FailQueued($"Model {model.Name} version {model.Version} was unregistered before this request ran");
        _scaleLocks.TryRemove(model, out _);
    }

    private async Task StartWorkerAsync(Model model, int poolSize, CancellationToken cancellationToken)
    {
        var settings = model.Settings;
        var gpu = AssignGpu(model, settings);
        var worker = new WorkerThread(model, gpu, metrics, loggers.CreateLogger($"ServeSharp.Model.{model.Name}"));
        worker.TimedOut += w => _ = ReplaceAsync(model, w);
        model.Add(worker);
        var context = HandlerContexts.For(model.Archive, new SystemProperties
        {
            BatchSize = settings.BatchSize,
            DeviceType = gpu is null ? "cpu" : "gpu",
            GpuId = gpu,
            IntraOpThreads = model.Archive.Config.Handler.GetInt("intra_op_threads") ?? Math.Max(1, Environment.ProcessorCount / Math.Max(1, poolSize)),
            InterOpThreads = 1,
        }, loggers.CreateLogger($"ServeSharp.Model.{model.Name}"), model.Name, model.Version);
        try
        {
            await worker.StartAsync(context, cancellationToken);
        }
        catch
        {
            model.Remove(worker);
            throw;
        }
    }

    private int? AssignGpu(Model model, WorkerSettings settings)
    {
        if (settings.DeviceType != "gpu" && (settings.DeviceType == "cpu" || config.NumberOfGpu == 0)) return null;
        var slot = Interlocked.Increment(ref _gpuCounter) - 1;
        int? gpu = settings.DeviceIds.Count > 0 ? settings.DeviceIds[slot % settings.DeviceIds.Count]
            : config.NumberOfGpu > 0 ? slot % config.NumberOfGpu : null;
        if (gpu is null) LogNoGpu(_logger, model.Name);
        else if (!OrtSessionFactory.CudaBuilt) LogCpuBuild(_logger, model.Name, gpu.Value);
        return gpu;
    }

    // A timed-out worker is gone; keep the pool at its size. The dead worker stays listed until its replacement
    // is, so a request arriving in between queues for the new worker instead of seeing an empty pool.
    // The exception has a home: the log.
    private async Task ReplaceAsync(Model model, WorkerThread dead)
    {
        try
        {
            if (!model.Retired) await ScaleAsync(model, model.Settings.MinWorkers, CancellationToken.None);
        }
        catch (Exception e)
        {
            LogReplaceFailed(_logger, model.Name, e);
        }
        finally
        {
            model.Remove(dead);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Model {Model}: only {Started} of {Wanted} new workers loaded: {Error}")]
    private static partial void LogPartialScale(ILogger logger, string model, int started, int wanted, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Model {Model} asks for deviceType gpu but number_of_gpu is 0 and no deviceIds are set; running on CPU")]
    private static partial void LogNoGpu(ILogger logger, string model);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Model {Model}: worker assigned GPU {Gpu}, but this build has the CPU ONNX Runtime (build with -p:ServeSharpGpu=true for CUDA); running on CPU")]
    private static partial void LogCpuBuild(ILogger logger, string model, int gpu);

    [LoggerMessage(Level = LogLevel.Error, Message = "Model {Model}: could not replace a timed-out worker")]
    private static partial void LogReplaceFailed(ILogger logger, string model, Exception error);
}
