using Grpc.Core;
using Grpc.Net.Client;
using Org.Pytorch.Serve.Grpc.Inference;
using Org.Pytorch.Serve.Grpc.Management;

namespace ServeSharp.Tests.Grpc;

/// <summary>Real gRPC clients (Grpc.Net.Client and the stubs generated from ServeSharp's protos) on one channel per API.</summary>
internal sealed class GrpcClients : IDisposable
{
    private readonly GrpcChannel _inference;
    private readonly GrpcChannel _management;

    public GrpcClients(Uri inference, Uri management, HttpMessageHandler? handler = null)
    {
        _inference = GrpcChannel.ForAddress(inference, new GrpcChannelOptions { HttpHandler = handler });
        _management = GrpcChannel.ForAddress(management, new GrpcChannelOptions { HttpHandler = handler });
        Inference = new InferenceAPIsService.InferenceAPIsServiceClient(_inference);
        Management = new ManagementAPIsService.ManagementAPIsServiceClient(_management);
        // The management service on the inference port: each service answers only on its own listener.
        ManagementOnInferencePort = new ManagementAPIsService.ManagementAPIsServiceClient(_inference);
    }

    public InferenceAPIsService.InferenceAPIsServiceClient Inference { get; }
    public ManagementAPIsService.ManagementAPIsServiceClient Management { get; }
    public ManagementAPIsService.ManagementAPIsServiceClient ManagementOnInferencePort { get; }

    /// <summary>A call's options: a deadline that fails a hung test (a safety net, never an assertion on speed).</summary>
    public static CallOptions Safe(Metadata? headers = null) => new(headers, DateTime.UtcNow.AddSeconds(60));

    public static Metadata Bearer(string? key) => key is null ? new Metadata() : new Metadata { { "authorization", $"Bearer {key}" } };

    public void Dispose()
    {
        _inference.Dispose();
        _management.Dispose();
    }
}
