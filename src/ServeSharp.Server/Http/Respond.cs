using System.Text.Json.Serialization.Metadata;
using ServeSharp.Sdk;

namespace ServeSharp.Server.Http;

/// <summary>Writes JSON and TorchServe error bodies; the one place responses are shaped.</summary>
internal static class Respond
{
    public static Task Json<T>(HttpContext http, int status, T value, JsonTypeInfo<T> type)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        return http.Response.Body.WriteAsync(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(value, type), http.RequestAborted).AsTask();
    }

    public static Task Status(HttpContext http, int status, string message) =>
        Json(http, status, new StatusResponse(message), ApiJsonContext.Relaxed.StatusResponse);

    /// <summary>An error in the form the matched route speaks (TorchServe's, unless the route is KServe's).</summary>
    public static Task Error(HttpContext http, int status, string message, string? type = null)
    {
        if (http.Response.HasStarted) return Task.CompletedTask;
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        var body = http.GetEndpoint()?.Metadata.GetMetadata<ApiTag>()?.Errors == ErrorForm.KServe
            ? System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new KServeError(message), ApiJsonContext.Relaxed.KServeError)
            : ErrorBody.Write(status, type ?? ErrorBody.TypeFor(status), message);
        return http.Response.Body.WriteAsync(body, http.RequestAborted).AsTask();
    }

}
