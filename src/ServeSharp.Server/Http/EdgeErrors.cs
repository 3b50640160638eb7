using Microsoft.Extensions.Logging;
using ServeSharp.Server.Metrics;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Http;

/// <summary>
/// The one place errors become HTTP: domain exceptions from the model manager and the job path, Kestrel's
/// body-size refusals, and the routing's own 404/405, all written as TorchServe's <c>{code, type, message}</c>.
/// </summary>
internal static partial class EdgeErrors
{
    public static int StatusOf(ServeSharpException e) => e switch
    {
        PredictionFailedException p => p.StatusCode,
        ModelNotFoundException => 404,
        BadRequestException => 400,
        ConflictStatusException => 409,
        InvalidModelVersionException => 403,
        ServiceUnavailableException => 503,
        MethodNotAllowedException => 405,
        RequestEntityTooLargeException => 413,
        _ => 500,
    };

    /// <summary>The outermost middleware: maps what the endpoints throw, then counts the answer (TorchServe's Requests2XX/4XX/5XX).</summary>
    public static Func<HttpContext, RequestDelegate, Task> Handle(ServerMetrics metrics, ILogger logger) => async (http, next) =>
    {
        try
        {
            await next(http);
        }
        catch (ServeSharpException e)
        {
            if (e is ServiceUnavailableException { RetrySoon: true } && !http.Response.HasStarted) http.Response.Headers.RetryAfter = "1";
            await Respond.Error(http, StatusOf(e), e.Message, e.TypeName);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            await Respond.Error(http, 413, "Request body exceeds max_request_size", "RequestEntityTooLargeException");
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // The client is gone; there is nobody to answer.
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A bug, not a client's mistake: logged with its stack, answered as TorchServe answers one (500, JSON), the
            // server goes on.
            LogUnexpected(logger, http.Request.Method, http.Items[ApiPipeline.OriginalPathKey] as string ?? http.Request.Path.Value, e);
            await Respond.Error(http, 500, $"Internal server error: {e.GetType().Name}: {e.Message}", "InternalServerException");
        }

        if (!http.Response.HasStarted && http.Response.ContentLength is null && http.Response.ContentType is null)
        {
            var status = http.Response.StatusCode;
            var path = http.Items[ApiPipeline.OriginalPathKey] as string ?? http.Request.Path.Value;
            if (status == 404) await Respond.Error(http, 404, $"Requested resource is not found, please refer to API document: {http.Request.Method} {path}", "ResourceNotFoundException");
            else if (status == 405) await Respond.Error(http, 405, $"Requested method is not allowed, please refer to API document: {http.Request.Method} {path}", "MethodNotAllowedException");
        }
        // A gRPC call's outcome is its grpc-status (its HTTP status is 200 whatever happened).
        if (http.GetEndpoint()?.Metadata.GetMetadata<ApiTag>() is not { Api: Api.Metrics })
            metrics.RequestCompleted(Grpc.GrpcErrors.HttpStatusOf(http) ?? http.Response.StatusCode);
    };

    [LoggerMessage(EventId = 20, Level = LogLevel.Error, Message = "Unexpected error answering {Method} {Path}")]
    private static partial void LogUnexpected(ILogger logger, string method, string? path, Exception error);
}
