using Microsoft.Extensions.Logging;
using ServeSharp.Contracts;

namespace ServeSharp.Sdk;

/// <summary>
/// What a handler knows about its model and worker (TorchServe's <c>context</c>): names, the extracted model
/// folder, the manifest, the system properties and the <c>handler:</c> section of model-config.yaml.
/// Per-request data (headers, parameters, response status) lives on <see cref="InferenceRequest"/>.
/// </summary>
public sealed class HandlerContext
{
    /// <summary>The registered model name (TorchServe's <c>context.model_name</c>).</summary>
    public required string ModelName { get; init; }

    /// <summary>The model version from the manifest (or registration).</summary>
    public required string ModelVersion { get; init; }

    /// <summary>The folder the archive was extracted to (TorchServe's <c>system_properties["model_dir"]</c>).</summary>
    public required string ModelDirectory { get; init; }

    /// <summary>The archive's MANIFEST.json, as handlers need it.</summary>
    public required ModelManifest Manifest { get; init; }

    /// <summary>Batch size, device, GPU id, thread counts and the model-config values.</summary>
    public required SystemProperties SystemProperties { get; init; }

    /// <summary>The <c>handler:</c> section of model-config.yaml (empty when there is none).</summary>
    public ConfigSection HandlerConfig { get; init; } = ConfigSection.Empty;

    /// <summary>The model log (TorchServe's <c>MODEL_LOG</c>: logs/model_log.log, and ts_log.log): what a handler logs goes there.</summary>
    public required ILogger Logger { get; init; }

    /// <summary>
    /// The session this worker shares with the model's other workers (model-config.yaml <c>sharedSession: true</c>), or
    /// null for a session of its own. <see cref="BaseHandler{TInput,TOutput}"/> uses it; a handler that opens sessions
    /// itself acquires it and releases it when disposed.
    /// </summary>
    public SharedSession? SharedSession { get; init; }

    /// <summary>Absolute path of a file in the model folder (for example the manifest's serializedFile).</summary>
    public string PathOf(string relative) => Path.Combine(ModelDirectory, relative);
}

/// <summary>TorchServe's <c>context.system_properties</c>, typed.</summary>
public sealed record SystemProperties
{
    /// <summary>The most requests one batch may hold.</summary>
    public int BatchSize { get; init; } = 1;

    /// <summary>"cpu" or "gpu", from model-config.yaml (deviceType) or the server.</summary>
    public string DeviceType { get; init; } = "cpu";

    /// <summary>The GPU this worker was given (round-robin over deviceIds), or null on CPU.</summary>
    public int? GpuId { get; init; }

    /// <summary>ONNX Runtime intra-op threads for this worker; 0 lets ONNX Runtime choose.</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>ONNX Runtime inter-op threads for this worker; 0 lets ONNX Runtime choose.</summary>
    public int InterOpThreads { get; init; } = 1;

    /// <summary>The server's name and version, for handlers that report them.</summary>
    public string ServerVersion { get; init; } = "ServeSharp";
}
