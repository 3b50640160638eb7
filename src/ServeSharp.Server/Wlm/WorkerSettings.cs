namespace ServeSharp.Server.Wlm;

/// <summary>
/// The settings a model version runs with, after TorchServe's layering: config.properties defaults and its
/// <c>models</c> block, then the archive's model-config.yaml, then management-API parameters. Mutable only
/// through the management API (scale), under the model's lock.
/// </summary>
internal sealed record WorkerSettings
{
    public int MinWorkers { get; init; }
    public int MaxWorkers { get; init; }
    public int BatchSize { get; init; } = 1;
    public int MaxBatchDelayMs { get; init; } = 100;
    public int ResponseTimeoutSeconds { get; init; } = 120;
    public int StartupTimeoutSeconds { get; init; } = 120;
    public string DeviceType { get; init; } = "cpu";
    public IReadOnlyList<int> DeviceIds { get; init; } = [];

    /// <summary>Why a model that TorchServe's rule puts on GPU runs on CPU (no GPU, no CUDA library), for describe.</summary>
    public string? FallbackReason { get; init; }
    public WorkerIsolation Isolation { get; init; }

    /// <summary>TorchServe's maxRetryTimeoutInSec: how long a model whose workers are being restarted still counts as healthy.</summary>
    public int MaxRetryTimeoutSeconds { get; init; } = 300;
    public int? MaxWorkerMemoryMB { get; init; }

    /// <summary>model-config.yaml's <c>sharedSession</c>: in-process workers share one ONNX Runtime session (per GPU).</summary>
    public bool SharedSession { get; init; }
}
