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
    /// <summary>
    /// What owns <see cref="Body"/>'s memory when it is rented (a pooled buffer): the server disposes it once the body is
    /// written to the client, so the buffer goes back to its pool instead of a large array being allocated per answer.
    /// Null for a plain array. Where the server does not write the body itself, the owner is left to the garbage collector.
    /// </summary>
    public IDisposable? BodyOwner { get; init; }

    /// <summary>
    /// <paramref name="length"/> bytes of <paramref name="rented"/>, an array from <see cref="System.Buffers.ArrayPool{T}.Shared"/>
    /// that goes back to the pool once the server has written them.
    /// </summary>
    public static HandlerOutput Rented(byte[] rented, int length, string contentType) =>
        new(rented.AsMemory(0, length), contentType) { BodyOwner = new RentedBytes(rented) };

    private sealed class RentedBytes(byte[] array) : IDisposable
    {
        private byte[]? _array = array;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _array, null) is { } a) System.Buffers.ArrayPool<byte>.Shared.Return(a);
        }
    }

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
