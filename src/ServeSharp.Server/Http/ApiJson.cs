using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace ServeSharp.Server.Http;

// TorchServe's management and inference JSON shapes, serialised with source generation (no reflection).

internal sealed record StatusResponse([property: JsonPropertyName("status")] string Status);

internal sealed record ModelListEntry(
    [property: JsonPropertyName("modelName")] string ModelName,
    [property: JsonPropertyName("modelUrl")] string ModelUrl);

internal sealed record ModelListResponse(
    [property: JsonPropertyName("models")] IReadOnlyList<ModelListEntry> Models,
    [property: JsonPropertyName("nextPageToken"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? NextPageToken);

internal sealed record WorkerDescription(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("startTime")] string StartTime,
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("memoryUsage")] long MemoryUsage,
    [property: JsonPropertyName("pid")] int Pid,
    [property: JsonPropertyName("gpu")] bool Gpu,
    [property: JsonPropertyName("gpuUsage")] string GpuUsage,
    [property: JsonPropertyName("deviceType")] string DeviceType,
    [property: JsonPropertyName("fallbackReason"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? FallbackReason,
    [property: JsonPropertyName("intraOpThreads")] int IntraOpThreads,
    [property: JsonPropertyName("isolation")] string Isolation,
    [property: JsonPropertyName("restarts")] int Restarts,
    [property: JsonPropertyName("lastExitReason"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? LastExitReason,
    [property: JsonPropertyName("error"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Error);

/// <summary>
/// One model version as TorchServe's describe prints it (DescribeModelResponse: its fields, order and types; null ones
/// left out, as Gson does), then ServeSharp's own fields.
/// </summary>
internal sealed class ModelDescription
{
    [JsonPropertyName("modelName")] public required string ModelName { get; init; }
    [JsonPropertyName("modelVersion")] public required string ModelVersion { get; init; }
    [JsonPropertyName("modelUrl")] public required string ModelUrl { get; init; }
    [JsonPropertyName("runtime")] public required string Runtime { get; init; }
    [JsonPropertyName("minWorkers")] public int MinWorkers { get; init; }
    [JsonPropertyName("maxWorkers")] public int MaxWorkers { get; init; }
    [JsonPropertyName("batchSize")] public int BatchSize { get; init; }
    [JsonPropertyName("maxBatchDelay")] public int MaxBatchDelay { get; init; }
    [JsonPropertyName("responseTimeout")] public int ResponseTimeout { get; init; }
    [JsonPropertyName("startupTimeout")] public int StartupTimeout { get; init; }
    [JsonPropertyName("maxRetryTimeoutInSec")] public long MaxRetryTimeoutInSec { get; init; }
    [JsonPropertyName("clientTimeoutInMills")] public long ClientTimeoutInMills { get; init; }
    [JsonPropertyName("parallelType")] public string ParallelType { get; init; } = "";
    [JsonPropertyName("parallelLevel")] public int ParallelLevel { get; init; }
    [JsonPropertyName("deviceType")] public required string DeviceType { get; init; }
    [JsonPropertyName("deviceIds"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<int>? DeviceIds { get; init; }
    [JsonPropertyName("continuousBatching")] public bool ContinuousBatching { get; init; }
    [JsonPropertyName("useJobTicket")] public bool UseJobTicket { get; init; }
    [JsonPropertyName("useVenv")] public bool UseVenv { get; init; }
    [JsonPropertyName("stateful")] public bool Stateful { get; init; }
    [JsonPropertyName("sequenceMaxIdleMSec")] public long SequenceMaxIdleMSec { get; init; }
    [JsonPropertyName("sequenceTimeoutMSec")] public long SequenceTimeoutMSec { get; init; }
    [JsonPropertyName("maxNumSequence")] public int MaxNumSequence { get; init; }
    [JsonPropertyName("maxSequenceJobQueueSize")] public int MaxSequenceJobQueueSize { get; init; }
    [JsonPropertyName("loadedAtStartup")] public bool LoadedAtStartup { get; init; }
    [JsonPropertyName("workers")] public required IReadOnlyList<WorkerDescription> Workers { get; init; }
    [JsonPropertyName("jobQueueStatus")] public required QueueStatus JobQueueStatus { get; init; }

    /// <summary>The handler's describe hook's answer, only with <c>?customized=true</c>.</summary>
    [JsonPropertyName("customizedMetadata"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public JsonObject? CustomizedMetadata { get; init; }

    // ServeSharp's: the handler as resolved, whether this is the default version, the queue's capacity (TorchServe's
    // jobQueueSize: config.properties' job_queue_size or model-config.yaml's), the lifecycle state, failed loads in a row.
    [JsonPropertyName("handler")] public required string Handler { get; init; }
    [JsonPropertyName("isDefault")] public bool IsDefault { get; init; }
    [JsonPropertyName("jobQueueSize")] public int JobQueueSize { get; init; }
    [JsonPropertyName("state")] public required string State { get; init; }
    [JsonPropertyName("consecutiveFailures")] public int ConsecutiveFailures { get; init; }
}

internal sealed record QueueStatus(
    [property: JsonPropertyName("remainingCapacity")] int RemainingCapacity,
    [property: JsonPropertyName("pendingRequests")] int PendingRequests);

// KServe's shapes: v1 and the Open Inference Protocol v2 (errors are {"error": message} in both).

internal sealed record KServeError([property: JsonPropertyName("error")] string Error);

internal sealed record KServeLive([property: JsonPropertyName("live")] bool Live);

internal sealed record KServeReady([property: JsonPropertyName("ready")] bool Ready);

internal sealed record KServeModelReady([property: JsonPropertyName("name")] string Name, [property: JsonPropertyName("ready")] bool Ready);

internal sealed record KServeModels([property: JsonPropertyName("models")] IReadOnlyList<string> Models);

internal sealed record OipServerMetadata(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("version")] string Version,
    [property: JsonPropertyName("extensions")] IReadOnlyList<string> Extensions);

internal sealed record OipTensorMetadata(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("datatype")] string Datatype,
    [property: JsonPropertyName("shape")] IReadOnlyList<long> Shape);

internal sealed record OipModelMetadata(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("versions")] IReadOnlyList<string> Versions,
    [property: JsonPropertyName("platform")] string Platform,
    [property: JsonPropertyName("inputs")] IReadOnlyList<OipTensorMetadata> Inputs,
    [property: JsonPropertyName("outputs")] IReadOnlyList<OipTensorMetadata> Outputs);

[JsonSourceGenerationOptions(WriteIndented = true)]
[JsonSerializable(typeof(StatusResponse))]
[JsonSerializable(typeof(ModelListResponse))]
[JsonSerializable(typeof(List<ModelDescription>))]
[JsonSerializable(typeof(KServeError))]
[JsonSerializable(typeof(KServeLive))]
[JsonSerializable(typeof(KServeReady))]
[JsonSerializable(typeof(KServeModelReady))]
[JsonSerializable(typeof(KServeModels))]
[JsonSerializable(typeof(OipServerMetadata))]
[JsonSerializable(typeof(OipModelMetadata))]
internal sealed partial class ApiJsonContext : JsonSerializerContext
{
    /// <summary>Writes quotes as \" (not \u0022), as TorchServe's messages read.</summary>
    public static ApiJsonContext Relaxed { get; } = new(new System.Text.Json.JsonSerializerOptions
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });
}
