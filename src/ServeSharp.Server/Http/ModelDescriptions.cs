using System.Globalization;
using System.Text.Json.Nodes;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Http;

/// <summary>A model version and its workers as describe prints them (<see cref="ModelDescription"/>), for REST and gRPC.</summary>
internal static class ModelDescriptions
{
    public static ModelDescription For(ModelManager models, Model m, JsonObject? customizedMetadata)
    {
        var s = m.Settings;
        var yaml = m.Archive.Config.All;
        var memory = Environment.WorkingSet;
        var pending = m.Aggregator.Pending;
        // TorchServe shows its parallel settings only when both are set, and its sequence settings only with sequenceMaxIdleMSec.
        var parallel = yaml.GetInt("parallelLevel") is > 0 and var level && yaml.GetString("parallelType") is { Length: > 0 } type ? (type, level) : ("", 0);
        var sequenced = yaml.GetInt("sequenceMaxIdleMSec") is > 0;
        return new ModelDescription
        {
            ModelName = m.Name,
            ModelVersion = m.Version,
            ModelUrl = m.Url,
            Runtime = m.Runtime,
            MinWorkers = s.MinWorkers,
            MaxWorkers = s.MaxWorkers,
            BatchSize = s.BatchSize,
            MaxBatchDelay = s.MaxBatchDelayMs,
            ResponseTimeout = s.ResponseTimeoutSeconds,
            StartupTimeout = s.StartupTimeoutSeconds,
            MaxRetryTimeoutInSec = s.MaxRetryTimeoutSeconds,
            ClientTimeoutInMills = yaml.GetInt("clientTimeoutInMills") ?? 0,
            ParallelType = parallel.Item1,
            ParallelLevel = parallel.Item2,
            DeviceType = s.DeviceType,
            DeviceIds = s.DeviceIds.Count > 0 ? s.DeviceIds : null,
            ContinuousBatching = yaml.GetBool("continuousBatching") ?? false,
            UseJobTicket = yaml.GetBool("useJobTicket") ?? false,
            UseVenv = yaml.GetBool("useVenv") ?? false,
            Stateful = yaml.GetBool("sequenceBatching") ?? false,
            SequenceMaxIdleMSec = sequenced ? yaml.GetInt("sequenceMaxIdleMSec") ?? 0 : 0,
            SequenceTimeoutMSec = sequenced ? yaml.GetInt("sequenceTimeoutMSec") ?? 0 : 0,
            MaxNumSequence = sequenced ? yaml.GetInt("maxNumSequence") ?? 1 : 0,
            MaxSequenceJobQueueSize = sequenced ? yaml.GetInt("maxSequenceJobQueueSize") ?? 1 : 0,
            LoadedAtStartup = m.LoadedAtStartup,
            Workers = [.. m.Workers.Select(w => Describe(w, memory))],
            JobQueueStatus = new QueueStatus(Math.Max(0, m.Aggregator.Capacity - pending), pending),
            CustomizedMetadata = customizedMetadata,
            Handler = m.Factory.Description,
            IsDefault = models.IsDefault(m),
            JobQueueSize = m.Aggregator.Capacity,
            State = m.State.ToString().ToUpperInvariant(),
            ConsecutiveFailures = m.ConsecutiveFailures,
        };
    }

    private static WorkerDescription Describe(WorkerThread w, long memory)
    {
        return new WorkerDescription(w.Id, w.StartTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture), StatusName(w.State),
            w.ResidentBytes ?? memory, w.ProcessId, w.GpuId is not null, w.GpuId is { } g ? $"gpu {g}" : "N/A", w.DeviceType, w.FallbackReason, w.IntraOpThreads, w.Isolation == WorkerIsolation.Process ? "process" : "in-process",
            w.Restarts, w.LastExitReason, w.FailureReason);
    }

    // TorchServe's names for a worker's state; FAILED is ours (TorchServe shows such a worker as UNLOADING while it retries).
    private static string StatusName(WorkerState s) => s switch
    {
        WorkerState.Ready or WorkerState.Busy => "READY",
        WorkerState.Loading => "LOADING",
        WorkerState.Stopping => "UNLOADING",
        WorkerState.Failed => "FAILED",
        _ => "STOPPED",
    };
}
