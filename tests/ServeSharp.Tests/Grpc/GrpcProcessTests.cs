using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Org.Pytorch.Serve.Grpc.Inference;
using Org.Pytorch.Serve.Grpc.Management;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;
using static ServeSharp.Tests.Grpc.GrpcClients;

namespace ServeSharp.Tests.Grpc;

/// <summary>The gRPC APIs of the real servesharp process: TorchServe's token authorization on both ports.</summary>
[Collection("server")]
public sealed class GrpcProcessTests(ModelStoreFixture store)
{
    [Fact]
    public async Task Each_grpc_api_wants_its_own_key_and_refuses_others_with_permission_denied_while_ping_is_open()
    {
        await using var server = ServerProcess.Start(store.NewWorkDir(), store.Store, ["--models", "probe=probe.mar", "--ncs"]);
        await server.WaitHealthyAsync();
        Assert.NotNull(server.InferenceKey);
        using var grpc = new GrpcClients(new Uri(server.GrpcInferenceUrl), new Uri(server.GrpcManagementUrl));
        var predict = new PredictionsRequest { ModelName = "probe", Input = { ["data"] = ByteString.CopyFromUtf8("x") } };

        Assert.Contains("Healthy", (await grpc.Inference.PingAsync(new Empty(), Safe())).Health);
        foreach (var key in new[] { null, "wrong", server.ManagementKey })
        {
            var refused = await Assert.ThrowsAsync<RpcException>(() => grpc.Inference.PredictionsAsync(predict, Safe(Bearer(key))).ResponseAsync);
            Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
            Assert.Contains("Token Authorization failed", refused.Status.Detail);
        }
        foreach (var key in new[] { null, server.InferenceKey })
        {
            var refused = await Assert.ThrowsAsync<RpcException>(() => grpc.Management.ListModelsAsync(new ListModelsRequest(), Safe(Bearer(key))).ResponseAsync);
            Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        }

        Assert.NotEmpty((await grpc.Inference.PredictionsAsync(predict, Safe(Bearer(server.InferenceKey)))).Prediction);
        var list = JsonDocument.Parse((await grpc.Management.ListModelsAsync(new ListModelsRequest(), Safe(Bearer(server.ManagementKey)))).Msg).RootElement;
        Assert.Equal("probe", list.GetProperty("models")[0].GetProperty("modelName").GetString());
    }
}
