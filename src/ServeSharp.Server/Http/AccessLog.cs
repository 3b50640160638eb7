using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Http.Features;
using ServeSharp.Server.Logging;

namespace ServeSharp.Server.Http;

/// <summary>
/// TorchServe's access log: one <c>ACCESS_LOG</c> line per answered request, as its frontend writes them —
/// <c>/127.0.0.1:51234 "POST /predictions/deeplab HTTP/1.1" 200 118</c> (client, request line as sent, status,
/// milliseconds); a gRPC call as <c>"gRPC package.Service/Method HTTP/2.0"</c> with its grpc-status code.
/// </summary>
internal static partial class AccessLog
{
    /// <summary>The outermost middleware, so the line carries the status the client really got.</summary>
    public static Func<HttpContext, RequestDelegate, Task> Handle(ILoggerFactory loggers, TimeProvider time)
    {
        var logger = loggers.CreateLogger(LogFiles.AccessLog);
        return async (http, next) =>
        {
            var started = time.GetTimestamp();
            try
            {
                await next(http);
            }
            finally
            {
                if (logger.IsEnabled(LogLevel.Information)) Write(logger, http, (long)time.GetElapsedTime(started).TotalMilliseconds);
            }
        };
    }

    private static void Write(ILogger logger, HttpContext http, long milliseconds)
    {
        var address = http.Connection.RemoteIpAddress;
        if (address is { IsIPv4MappedToIPv6: true }) address = address.MapToIPv4();
        var remote = "/" + (address ?? IPAddress.Loopback) + ":" + http.Connection.RemotePort.ToString(CultureInfo.InvariantCulture);
        // As the client sent it: routing has prefixed the path with its listener's API set by now.
        var target = http.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } raw ? raw
            : (http.Items[ApiPipeline.OriginalPathKey] as string ?? http.Request.Path.Value) + http.Request.QueryString;
        if (http.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true)
        {
            var code = Grpc.GrpcErrors.StatusCodeOf(http) ?? 2; // UNKNOWN when the call ended without a status
            var method = target.TrimStart('/');
            LogLine(logger, remote, "gRPC", method, "HTTP/2.0", code, milliseconds);
            return;
        }
        LogLine(logger, remote, http.Request.Method, target, http.Request.Protocol, http.Response.StatusCode, milliseconds);
    }

    [LoggerMessage(EventId = 8001, Level = LogLevel.Information, Message = "{Remote} \"{Method} {Target} {Protocol}\" {Status} {Milliseconds}")]
    private static partial void LogLine(ILogger logger, string remote, string method, string target, string protocol, int status, long milliseconds);
}
