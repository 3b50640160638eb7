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

internal sealed record ModelDescription(
    [property: JsonPropertyName("modelName")] string ModelName,
    [property: JsonPropertyName("modelVersion")] string ModelVersion,
    [property: JsonPropertyName("modelUrl")] string ModelUrl,
    [property: JsonPropertyName("runtime")] string Runtime,
    [property: JsonPropertyName("handler")] string Handler,
    [property: JsonPropertyName("minWorkers")] int MinWorkers,
    [property: JsonPropertyName("maxWorkers")] int MaxWorkers,
    [property: JsonPropertyName("batchSize")] int BatchSize,
    [property: JsonPropertyName("maxBatchDelay")] int MaxBatchDelay,
    [property: JsonPropertyName("responseTimeout")] int ResponseTimeout,
    [property: JsonPropertyName("isDefault")] bool IsDefault,
    [property: JsonPropertyName("loadedAtStartup")] bool LoadedAtStartup,
    [property: JsonPropertyName("jobQueueStatus")] QueueStatus JobQueueStatus,
    [property: JsonPropertyName("workers")] IReadOnlyList<WorkerDescription> Workers,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("consecutiveFailures")] int ConsecutiveFailures);

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
