using ServeSharp.Sdk;

namespace ServeSharp.Server.Http;

/// <summary>
/// An error with the status and message the client should see. Thrown by the model manager, caught once at the
/// endpoint and written as TorchServe's <c>{code, type, message}</c>.
/// </summary>
public sealed class ApiException(int statusCode, string message, string? type = null) : Exception(message)
{
    public int StatusCode { get; } = statusCode;
    public string Type { get; } = type ?? ErrorBody.TypeFor(statusCode);

    public static ApiException ModelNotFound(string name, string? version = null) =>
        new(404, version is null ? $"Model not found: {name}" : $"Model version {version} not found for model {name}");
}
