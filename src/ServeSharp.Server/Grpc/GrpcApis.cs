using ServeSharp.Server.Configuration;
using ServeSharp.Server.Http;

namespace ServeSharp.Server.Grpc;

/// <summary>The gRPC services in the one host, each on the listener of its API (see <see cref="ApiPipeline"/>).</summary>
internal static class GrpcApis
{
    public static void AddServices(IServiceCollection services, ServerConfig config) =>
        services.AddGrpc(o =>
        {
            o.Interceptors.Add<GrpcEdge>();
            // As REST: max_request_size bounds what a client may send, max_response_size what a prediction may answer.
            o.MaxReceiveMessageSize = (int)Math.Min(int.MaxValue, config.MaxRequestSize);
            o.MaxSendMessageSize = (int)Math.Min(int.MaxValue, config.MaxResponseSize);
        });

    /// <summary>Maps each service into the route group of every listener set that serves its API.</summary>
    public static void Map(IEndpointRouteBuilder app, IEnumerable<Api> listenerSets)
    {
        foreach (var set in listenerSets)
        {
            if ((set & (Api.GrpcInference | Api.GrpcManagement)) == Api.None) continue;
            var group = app.MapGroup(ApiPipeline.Prefix(set));
            if (set.HasFlag(Api.GrpcInference))
            {
                group.MapGrpcService<InferenceService>();
                group.MapGrpcService<OipInferenceService>();
            }
            if (set.HasFlag(Api.GrpcManagement)) group.MapGrpcService<ManagementService>();
        }
    }
}
