namespace ServeSharp.Server.Wlm;

/// <summary>
/// The errors the model manager, the work-load manager and the job path raise. Each is named after the exception
/// TorchServe reports in its error JSON's <c>type</c>, so the edge (HTTP today, other protocols later) maps the
/// class to its own status once, and lower layers never speak HTTP.
/// </summary>
internal abstract class ServeSharpException(string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The name TorchServe's clients read in <c>type</c>.</summary>
    public virtual string TypeName => GetType().Name;
}

/// <summary>No such model, version or archive.</summary>
internal sealed class ModelNotFoundException(string message) : ServeSharpException(message)
{
    public static ModelNotFoundException For(string name, string? version = null) =>
        new(version is null ? $"Model not found: {name}" : $"Model version {version} not found for model {name}");
}

/// <summary>A request the server refuses as malformed or invalid (TorchServe's BadRequestException and kin).</summary>
internal sealed class BadRequestException(string message, string typeName = "BadRequestException", Exception? inner = null)
    : ServeSharpException(message, inner)
{
    public override string TypeName => typeName;
}

/// <summary>A registration that collides with what is already there (a version, an archive file).</summary>
internal sealed class ConflictStatusException(string message, string typeName = "ConflictStatusException") : ServeSharpException(message)
{
    public override string TypeName => typeName;
}

/// <summary>
/// A version that may not be removed now: the default version while others are registered (TorchServe answers 403,
/// "Cannot remove default version for model {name}"; set another default first).
/// </summary>
internal sealed class InvalidModelVersionException(string message) : ServeSharpException(message);

/// <summary>The model cannot take the job now: no worker, a full queue, or it is being unregistered.</summary>
internal sealed class ServiceUnavailableException(string message, bool retrySoon = false) : ServeSharpException(message)
{
    /// <summary>True when the client should simply retry (a full queue): the edge adds Retry-After.</summary>
    public bool RetrySoon { get; } = retrySoon;
}

/// <summary>The server failed to do what was asked (workers that will not start).</summary>
internal sealed class InternalServerException(string message, Exception? inner = null) : ServeSharpException(message, inner);

/// <summary>An operation the configuration does not allow (the model API when it is off).</summary>
internal sealed class MethodNotAllowedException(string message) : ServeSharpException(message);

/// <summary>A body over max_request_size.</summary>
internal sealed class RequestEntityTooLargeException(string message) : ServeSharpException(message);

/// <summary>
/// A prediction the handler answered with an error (status ≥ 400). The REST API writes such answers through as the
/// handler made them; protocols with their own error form (OIP v2, KServe v1, gRPC) raise this to map it at their edge.
/// </summary>
internal sealed class PredictionFailedException(int statusCode, string message, string typeName) : ServeSharpException(message)
{
    public int StatusCode { get; } = statusCode;

    public override string TypeName => typeName;

    /// <summary>The message of a failed job's answer: TorchServe's error JSON's <c>message</c>, or the body's text.</summary>
    public static PredictionFailedException From(JobResult result)
    {
        string message, type = Sdk.ErrorBody.TypeFor(result.StatusCode);
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(result.Body);
            message = doc.RootElement.GetProperty("message").GetString() ?? "";
            if (doc.RootElement.TryGetProperty("type", out var t) && t.GetString() is { } named) type = named;
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or KeyNotFoundException or InvalidOperationException)
        {
            var text = System.Text.Encoding.UTF8.GetString(result.Body.Span[..Math.Min(result.Body.Length, 512)]);
            message = text.Length > 0 ? text : $"the handler answered {result.StatusCode}";
        }
        return new PredictionFailedException(result.StatusCode, message, type);
    }
}
