using Grpc.AspNetCore.Server;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;
using Org.Pytorch.Serve.Grpc.Inference;
using Org.Pytorch.Serve.Grpc.Management;
using ServeSharp.Server.Http;

namespace ServeSharp.Server.Grpc;

/// <summary>
/// Every gRPC call passes here: the token (TorchServe's gRPC interceptor: <c>authorization: Bearer &lt;key&gt;</c>
/// metadata, the management key for the management service and the inference key for the rest, PERMISSION_DENIED
/// otherwise), then the call, whose exceptions become statuses through <see cref="GrpcErrors"/>. While the server stops,
/// inference calls other than the health checks are refused with UNAVAILABLE, and the ones admitted before are waited for.
/// </summary>
internal sealed partial class GrpcEdge(TokenAuthorization auth, ServerDrain drain, ILoggerFactory loggers) : Interceptor
{
    private readonly ILogger _logger = loggers.CreateLogger("ServeSharp.Grpc");

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation) => GuardAsync(context, () => continuation(request, context));

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream,
        ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation) =>
        GuardAsync(context, () => continuation(requestStream, context));

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation) =>
        GuardAsync(context, async () =>
        {
            await continuation(request, responseStream, context);
            return true;
        });

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream,
        IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation) =>
        GuardAsync(context, async () =>
        {
            await continuation(requestStream, responseStream, context);
            return true;
        });

    private async Task<T> GuardAsync<T>(ServerCallContext context, Func<Task<T>> call)
    {
        // The method as routed (context.Method is the request path, which carries the listener's route prefix).
        var http = context.GetHttpContext();
        var method = http.GetEndpoint()?.Metadata.GetMetadata<GrpcMethodMetadata>()?.Method;
        var api = method?.ServiceName == ManagementAPIsService.Descriptor.FullName ? Api.GrpcManagement : Api.GrpcInference;
        // Ping is open like REST's /ping: health checks carry no key.
        var open = method is { Name: "Ping" } && method.ServiceName == InferenceAPIsService.Descriptor.FullName;
        if (!open && !auth.Allows(http, api))
            throw new RpcException(new Status(StatusCode.PermissionDenied, auth.RefusalMessage(api)));
        var counted = api == Api.GrpcInference && !IsHealthCheck(method);
        if (counted && !drain.TryEnter(http))
            throw new RpcException(new Status(StatusCode.Unavailable, "ServeSharp is shutting down: this replica takes no new requests"));
        try
        {
            return await call();
        }
        catch (Exception e) when (e is not RpcException)
        {
            if (GrpcErrors.StatusOf(e, context) is { } status) throw new RpcException(status);
            LogFailed(_logger, method?.FullName ?? context.Method, e);
            throw new RpcException(new Status(StatusCode.Internal, "Internal server error: " + e.Message));
        }
        finally
        {
            if (counted) drain.Leave(http);
        }
    }

    // TorchServe's Ping and the Open Inference Protocol's liveness and readiness: answered during a drain, never waited for.
    private static bool IsHealthCheck(IMethod? method) => method is { Name: "Ping" or "ServerLive" or "ServerReady" or "ModelReady" };

    [LoggerMessage(EventId = 8001, Level = LogLevel.Error, Message = "gRPC call {Method} failed")]
    private static partial void LogFailed(ILogger logger, string method, Exception error);
}
