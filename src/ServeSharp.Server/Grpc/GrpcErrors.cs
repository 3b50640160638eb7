using Grpc.Core;
using Microsoft.AspNetCore.Http.Features;
using ServeSharp.Server.Http;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Grpc;

/// <summary>
/// The one place errors become gRPC statuses. A domain exception takes the HTTP status the REST edge gives it
/// (<see cref="EdgeErrors.StatusOf"/>), and an HTTP status becomes a gRPC code by TorchServe's own table
/// (frontend GRPCUtils.getGRPCStatusCode), so both protocols refuse the same things the same way.
/// </summary>
internal static class GrpcErrors
{
    /// <summary>TorchServe's HTTP → gRPC table.</summary>
    public static StatusCode CodeOf(int httpStatus) => httpStatus switch
    {
        400 => StatusCode.InvalidArgument,
        401 => StatusCode.Unauthenticated,
        403 => StatusCode.PermissionDenied,
        404 => StatusCode.NotFound,
        409 => StatusCode.Aborted,
        413 or 429 => StatusCode.ResourceExhausted,
        416 => StatusCode.OutOfRange,
        499 => StatusCode.Cancelled,
        501 => StatusCode.Unimplemented,
        503 => StatusCode.Unavailable,
        504 => StatusCode.DeadlineExceeded,
        >= 200 and < 300 => StatusCode.OK,
        >= 400 and < 500 => StatusCode.FailedPrecondition,
        >= 500 and < 600 => StatusCode.Internal,
        _ => StatusCode.Unknown,
    };

    /// <summary>The HTTP status a gRPC code stands for, the table read backwards: what Requests2XX/4XX/5XX count.</summary>
    public static int HttpStatusOf(StatusCode code) => code switch
    {
        StatusCode.OK => 200,
        StatusCode.Cancelled => 499,
        StatusCode.InvalidArgument or StatusCode.FailedPrecondition => 400,
        StatusCode.Unauthenticated => 401,
        StatusCode.PermissionDenied => 403,
        StatusCode.NotFound => 404,
        StatusCode.AlreadyExists or StatusCode.Aborted => 409,
        StatusCode.ResourceExhausted => 429,
        StatusCode.OutOfRange => 416,
        StatusCode.Unimplemented => 501,
        StatusCode.Unavailable => 503,
        StatusCode.DeadlineExceeded => 504,
        _ => 500,
    };

    /// <summary>The status of a failed call (null: not ours to map; gRPC answers it as UNKNOWN and logs it).</summary>
    public static Status? StatusOf(Exception e, ServerCallContext context) => e switch
    {
        RpcException rpc => rpc.Status,
        ServeSharpException domain => new(CodeOf(EdgeErrors.StatusOf(domain)), domain.Message),
        OperationCanceledException when context.CancellationToken.IsCancellationRequested => ClientGone(context),
        _ => null,
    };

    /// <summary>A job that answered with an error (a handler's output with status ≥ 400, a timeout, a worker that died).</summary>
    public static RpcException Failed(JobResult result, ServerCallContext context) =>
        new(result.StatusCode == 499 ? ClientGone(context) : new Status(CodeOf(result.StatusCode), PredictionFailedException.From(result).Message));

    /// <summary>google.rpc.Status for a message of StreamPredictions2, which answers errors in-band as TorchServe does.</summary>
    public static Google.Rpc.Status InBand(Status status) => new() { Code = (int)status.StatusCode, Message = status.Detail };

    /// <summary>For the request counters: the gRPC status of a finished call, as HTTP; null when it was not a gRPC call.</summary>
    public static int? HttpStatusOf(HttpContext http) => StatusCodeOf(http) is { } code ? HttpStatusOf((StatusCode)code) : null;

    /// <summary>A finished gRPC call's grpc-status, as a number (null: not a gRPC call, or not answered).</summary>
    public static int? StatusCodeOf(HttpContext http)
    {
        // A call that fails before its first message answers in the headers ("trailers-only"); others in the trailers.
        var status = http.Response.Headers["grpc-status"].ToString();
        if (status.Length == 0) status = http.Features.Get<IHttpResponseTrailersFeature>()?.Trailers["grpc-status"].ToString() ?? "";
        return int.TryParse(status, System.Globalization.CultureInfo.InvariantCulture, out var code) ? code : null;
    }

    // A client that leaves and a deadline that passes both fire the call's token; the client's deadline is the usual cause.
    private static Status ClientGone(ServerCallContext context) => context.Deadline <= DateTime.UtcNow
        ? new(StatusCode.DeadlineExceeded, "The call's deadline passed before the prediction was answered")
        : new(StatusCode.Cancelled, "The client cancelled the call");
}
