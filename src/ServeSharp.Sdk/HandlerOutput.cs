using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace ServeSharp.Sdk;

/// <summary>
/// One response body from a handler. The status and content type set on <see cref="InferenceRequest.Response"/>
/// take precedence; errors carry their own status.
/// </summary>
public readonly record struct HandlerOutput(ReadOnlyMemory<byte> Body, string ContentType, int? StatusCode = null)
{
    /// <summary>Raw bytes (an image, a mask) with their content type.</summary>
    public static HandlerOutput Bytes(ReadOnlyMemory<byte> body, string contentType) => new(body, contentType);

    /// <summary>UTF-8 text.</summary>
    public static HandlerOutput Text(string text, string contentType = "text/plain; charset=utf-8") => new(Encoding.UTF8.GetBytes(text), contentType);

    /// <summary>JSON through a source-generated type info (no reflection).</summary>
    public static HandlerOutput Json<T>(T value, JsonTypeInfo<T> typeInfo) => new(JsonSerializer.SerializeToUtf8Bytes(value, typeInfo), "application/json");

    /// <summary>JSON already written by the handler.</summary>
    public static HandlerOutput JsonBytes(ReadOnlyMemory<byte> utf8Json) => new(utf8Json, "application/json");

    /// <summary>TorchServe's error body <c>{"code", "type", "message"}</c> with the same status.</summary>
    public static HandlerOutput Error(int statusCode, string message, string? type = null) =>
        new(ErrorBody.Write(statusCode, type ?? ErrorBody.TypeFor(statusCode), message), "application/json", statusCode);

    /// <summary>True when this output is an error (status ≥ 400).</summary>
    public bool IsError => StatusCode is >= 400;
}

/// <summary>TorchServe's error JSON, shared by handlers and the server so both speak the same shape.</summary>
public static class ErrorBody
{
    /// <summary>Serialises <c>{"code": N, "type": "...", "message": "..."}</c>.</summary>
    public static byte[] Write(int code, string type, string message)
    {
        using var buffer = new MemoryStream(128 + message.Length);
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteNumber("code", code);
            json.WriteString("type", type);
            json.WriteString("message", message);
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary>The exception name TorchServe reports for a status code.</summary>
    public static string TypeFor(int code) => code switch
    {
        400 => "BadRequestException",
        401 => "InvalidKeyException",
        404 => "ModelNotFoundException",
        405 => "MethodNotAllowedException",
        408 => "RequestTimeoutException",
        409 => "ConflictStatusException",
        413 => "RequestEntityTooLargeException",
        415 => "UnsupportedMediaTypeException",
        503 => "ServiceUnavailableException",
        507 => "InsufficientStorageException",
        _ when code >= 500 => "InternalServerException",
        _ => "BadRequestException",
    };
}
