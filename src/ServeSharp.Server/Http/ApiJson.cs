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

[JsonSourceGenerationOptions(WriteIndented = true)]
[JsonSerializable(typeof(StatusResponse))]
[JsonSerializable(typeof(ModelListResponse))]
[JsonSerializable(typeof(List<ModelDescription>))]
internal sealed partial class ApiJsonContext : JsonSerializerContext
{
    /// <summary>Writes quotes as \" (not \u0022), as TorchServe's messages read.</summary>
    public static ApiJsonContext Relaxed { get; } = new(new System.Text.Json.JsonSerializerOptions
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });
}
