using ServeSharp.Contracts;

namespace ServeSharp.Archive;

/// <summary>
/// The archive's <c>model-config.yaml</c>: TorchServe's per-model settings, plus the free-form
/// <c>handler:</c> section that the handler reads. Absent keys are null so that the server's defaults
/// (config.properties) and management-API parameters can be layered in TorchServe's order.
/// </summary>
public sealed record ModelConfig
{
    public int? MinWorkers { get; init; }
    public int? MaxWorkers { get; init; }
    public int? BatchSize { get; init; }
    public int? MaxBatchDelay { get; init; }
    public int? ResponseTimeout { get; init; }
    public int? StartupTimeout { get; init; }
    public string? DeviceType { get; init; }
    public IReadOnlyList<int>? DeviceIds { get; init; }

    /// <summary><c>workerIsolation</c>: "process" or "in-process" (ServeSharp's key), null when not set.</summary>
    public string? WorkerIsolation { get; init; }

    /// <summary><c>maxWorkerMemoryMB</c>: a process worker over this resident memory is restarted (ServeSharp's key).</summary>
    public int? MaxWorkerMemoryMB { get; init; }

    /// <summary>
    /// <c>precision</c>: "fp32", "int8" or "fp16" (ServeSharp's key), null when not set (fp32). int8 and fp16 serve the
    /// model the archiver wrote with the archive (<see cref="QuantizationReport"/>); fp16 only on GPU workers.
    /// </summary>
    public string? Precision { get; init; }

    /// <summary><c>sharedSession</c>: the model's in-process workers share one ONNX Runtime session (ServeSharp's key).</summary>
    public bool SharedSession { get; init; }

    /// <summary>The <c>handler:</c> section, handed to the handler as it is.</summary>
    public ConfigSection Handler { get; init; } = ConfigSection.Empty;

    /// <summary>Every top-level key, known or not: unknown keys are kept (and warned about), never dropped.</summary>
    public ConfigSection All { get; init; } = ConfigSection.Empty;

    /// <summary>Warnings found while reading (unknown keys); the loader logs them.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    public static ModelConfig Empty { get; } = new();
}
