namespace ServeSharp.Sdk;

/// <summary>
/// Thrown by a handler hook to fail one request with a status and message the client sees
/// (for example 400 for an image that does not decode). Other exceptions become 503 "Prediction failed".
/// </summary>
public class HandlerException(int statusCode, string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The HTTP status for this failure.</summary>
    public int StatusCode { get; } = statusCode;

    /// <summary>A 400 Bad Request failure.</summary>
    public static HandlerException BadRequest(string message) => new(400, message);
}

/// <summary>A handler that cannot be found, compiled or loaded. The message names the file and the cause.</summary>
public sealed class HandlerLoadException(string message, Exception? inner = null) : Exception(message, inner);
