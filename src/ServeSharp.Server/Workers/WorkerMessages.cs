using System.Text.Json.Serialization;
using ServeSharp.Sdk;

namespace ServeSharp.Server.Workers;

/// <summary>What a worker process loads: the model's extracted folder and the worker's system properties.</summary>
internal sealed record WorkerLoad(string ModelDirectory, string ModelName, string ModelVersion, string? Handler, string? CompiledCache, SystemProperties SystemProperties);

[JsonSerializable(typeof(WorkerLoad))]
internal sealed partial class WorkerJsonContext : JsonSerializerContext;

/// <summary>
/// The batch and result payloads. A request travels with its id, headers and parameters; a response with the
/// handler's output (status, content type, body) and what the handler set on the request's response settings,
/// so the server writes byte for byte what an in-process worker would have.
/// </summary>
internal static class WorkerMessages
{
    public static ReadOnlyMemory<byte> Batch(FrameBuilder frame, long batchId, IReadOnlyList<InferenceRequest> requests)
    {
        frame.Begin(FrameType.Batch).Int64(batchId);
        frame.Int32(requests.Count);
        foreach (var r in requests)
        {
            frame.String(r.RequestId);
            frame.Int32(r.Headers.Count);
            foreach (var (k, v) in r.Headers)
            {
                frame.String(k);
                frame.String(v);
            }
            frame.Int32(r.Parameters.Count);
            foreach (var p in r.Parameters.Values)
            {
                frame.String(p.Name);
                frame.String(p.ContentType);
                frame.Bytes(p.Value.Span);
            }
        }
        return frame.Finish();
    }

    public static (long BatchId, InferenceRequest[] Requests) ReadBatch(byte[] payload)
    {
        var reader = new FrameReader(payload);
        var id = reader.Int64();
        var requests = new InferenceRequest[reader.Count(12)];
        for (var i = 0; i < requests.Length; i++)
        {
            var requestId = reader.String() ?? "";
            var headerCount = reader.Count(8);
            var headers = new Dictionary<string, string>(headerCount, StringComparer.OrdinalIgnoreCase);
            for (var h = 0; h < headerCount; h++) headers[reader.String() ?? ""] = reader.String() ?? "";
            var count = reader.Count(12);
            var parameters = new Dictionary<string, RequestParameter>(count, StringComparer.Ordinal);
            for (var p = 0; p < count; p++)
            {
                var name = reader.String() ?? "";
                var contentType = reader.String();
                parameters[name] = new RequestParameter(name, reader.Bytes(), contentType);
            }
            requests[i] = new InferenceRequest(requestId, parameters, headers);
        }
        return (id, requests);
    }

    public static ReadOnlyMemory<byte> Result(FrameBuilder frame, long batchId, IReadOnlyList<InferenceRequest> requests, IReadOnlyList<HandlerOutput> outputs)
    {
        frame.Begin(FrameType.Result).Int64(batchId);
        frame.Int32(outputs.Count);
        for (var i = 0; i < outputs.Count; i++)
        {
            var output = outputs[i];
            frame.Int32(output.StatusCode ?? -1);
            frame.String(output.ContentType);
            frame.Bytes(output.Body.Span);
            var response = i < requests.Count ? requests[i].Response : null;
            frame.Int32(response?.StatusCode ?? 200);
            frame.String(response?.ContentType);
            frame.Int32(response?.Headers.Count ?? 0);
            if (response is null) continue;
            foreach (var (k, v) in response.Headers)
            {
                frame.String(k);
                frame.String(v);
            }
        }
        return frame.Finish();
    }

    /// <summary>Reads the outputs and applies each response's settings to the server's own request objects.</summary>
    public static (long BatchId, HandlerOutput[] Outputs) ReadResult(byte[] payload, IReadOnlyList<InferenceRequest>? requests)
    {
        var reader = new FrameReader(payload);
        var id = reader.Int64();
        var outputs = new HandlerOutput[reader.Count(20)];
        for (var i = 0; i < outputs.Length; i++)
        {
            var status = reader.Int32();
            var contentType = reader.String() ?? "application/octet-stream";
            outputs[i] = new HandlerOutput(reader.Bytes(), contentType, status < 0 ? null : status);
            var responseStatus = reader.Int32();
            var responseType = reader.String();
            var headers = reader.Count(8);
            var response = requests is not null && i < requests.Count ? requests[i].Response : null;
            if (response is not null)
            {
                response.StatusCode = responseStatus;
                response.ContentType = responseType;
            }
            for (var h = 0; h < headers; h++)
            {
                var k = reader.String() ?? "";
                var v = reader.String() ?? "";
                if (response is not null) response.Headers[k] = v;
            }
        }
        return (id, outputs);
    }

    public static ReadOnlyMemory<byte> WithId(FrameBuilder frame, FrameType type, long batchId, string? message = null)
    {
        frame.Begin(type).Int64(batchId);
        if (type == FrameType.BatchFailed) frame.String(message);
        return frame.Finish();
    }
}
