using System.Net;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using ServeSharp.Server.Grpc.Oip;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Protocols;

/// <summary>
/// The Open Inference Protocol v2 over gRPC with a client generated from our oip_v2.proto (wire-equal to KServe's
/// grpc_predict_v2.proto), on the gRPC inference port of the in-process host.
/// </summary>
[Collection("protocols")]
public sealed class OipGrpcTests(ProtocolStoreFixture store)
{
    private const int W = 36, H = 28;

    private static CallOptions Safe() => new(deadline: DateTime.UtcNow.AddSeconds(60));

    [Fact]
    public async Task Health_metadata_and_raw_inference_agree_with_the_REST_answer()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["seg=seg.mar"]);
        using var channel = GrpcChannel.ForAddress(server.GrpcInferenceUrl);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);

        Assert.True((await client.ServerLiveAsync(new ServerLiveRequest(), Safe())).Live);
        Assert.True((await client.ServerReadyAsync(new ServerReadyRequest(), Safe())).Ready);
        Assert.True((await client.ModelReadyAsync(new ModelReadyRequest { Name = "seg" }, Safe())).Ready);
        var server_ = await client.ServerMetadataAsync(new ServerMetadataRequest(), Safe());
        Assert.Equal("servesharp", server_.Name);
        var meta = await client.ModelMetadataAsync(new ModelMetadataRequest { Name = "seg", Version = "1.0" }, Safe());
        Assert.Equal(["image", "pixels", "tensor"], meta.Inputs.Select(i => i.Name));
        Assert.Equal([-1L, -1, -1, 3], meta.Inputs[1].Shape);
        Assert.Equal(["classes", "probabilities"], meta.Outputs.Select(o => o.Name));

        var (pixels, png) = Images.Noise(W, H, seed: 30);
        using var http = server.Inference;
        var rest = await http.PostAsync("/predictions/seg?output=mask", new ByteArrayContent(png));
        var expected = Images.GrayPixels(await rest.Content.ReadAsByteArrayAsync());

        // An encoded image as raw BYTES (length-prefixed), and the same pixels as typed UINT8 contents.
        var raw = new ModelInferRequest { ModelName = "seg", Id = "g-1", Inputs = { new ModelInferRequest.Types.InferInputTensor { Name = "image", Datatype = "BYTES", Shape = { 1 } } } };
        raw.RawInputContents.Add(ByteString.CopyFrom([.. BitConverter.GetBytes(png.Length), .. png]));
        var answer = await client.ModelInferAsync(raw, Safe());
        Assert.Equal("g-1", answer.Id);
        Assert.Equal("1.0", answer.ModelVersion);
        var output = Assert.Single(answer.Outputs);
        Assert.Equal(("classes", "UINT8"), (output.Name, output.Datatype));
        Assert.Equal([1L, H, W], output.Shape);
        Assert.Equal(expected, answer.RawOutputContents[0].ToByteArray());

        var typed = new ModelInferRequest
        {
            ModelName = "seg",
            Inputs = { new ModelInferRequest.Types.InferInputTensor { Name = "pixels", Datatype = "UINT8", Shape = { 1, H, W, 3 }, Contents = new InferTensorContents { UintContents = { pixels.Select(p => (uint)p) } } } },
            Outputs = { new ModelInferRequest.Types.InferRequestedOutputTensor { Name = "classes" }, new ModelInferRequest.Types.InferRequestedOutputTensor { Name = "probabilities" } },
        };
        var both = await client.ModelInferAsync(typed, Safe());
        Assert.Equal(["classes", "probabilities"], both.Outputs.Select(o => o.Name));
        Assert.Equal(expected, both.RawOutputContents[0].ToByteArray());
        Assert.Equal(both.Outputs[1].Shape.Aggregate(1L, (a, d) => a * d) * 4, both.RawOutputContents[1].Length);
    }

    [Fact]
    public async Task Errors_are_gRPC_statuses_with_the_message_in_the_detail()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["seg=seg.mar"]);
        using var channel = GrpcChannel.ForAddress(server.GrpcInferenceUrl);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        ModelInferRequest Bytes(string model, byte[] data) => new()
        {
            ModelName = model,
            Inputs = { new ModelInferRequest.Types.InferInputTensor { Name = "image", Datatype = "BYTES", Shape = { 1 }, Contents = new InferTensorContents { BytesContents = { ByteString.CopyFrom(data) } } } },
        };

        var cases = new (Func<Task> Call, StatusCode Code, string Message)[]
        {
            (() => client.ModelInferAsync(Bytes("nosuch", [1, 2]), Safe()).ResponseAsync, StatusCode.NotFound, "nosuch"),
            (() => client.ModelInferAsync(Bytes("seg", "not an image"u8.ToArray()), Safe()).ResponseAsync, StatusCode.InvalidArgument, "decodable image"),
            (() => client.ModelReadyAsync(new ModelReadyRequest { Name = "seg", Version = "7" }, Safe()).ResponseAsync, StatusCode.NotFound, "7"),
            (() => client.ModelInferAsync(new ModelInferRequest
            {
                ModelName = "seg",
                Inputs = { new ModelInferRequest.Types.InferInputTensor { Name = "x", Datatype = "UINT8", Shape = { 1, 1, 1, 3 }, Contents = new InferTensorContents { UintContents = { 1, 2, 300 } } } },
            }, Safe()).ResponseAsync, StatusCode.InvalidArgument, "not a UINT8 value"),
            (() => client.ModelInferAsync(new ModelInferRequest
            {
                ModelName = "seg",
                Inputs = { new ModelInferRequest.Types.InferInputTensor { Name = "x", Datatype = "FP32", Shape = { 1, 3, 2, 2 } } },
                RawInputContents = { ByteString.CopyFrom(new byte[10]) },
            }, Safe()).ResponseAsync, StatusCode.InvalidArgument, "10 bytes of data for 12 FP32 elements"),
        };
        foreach (var (call, code, message) in cases)
        {
            var e = await Assert.ThrowsAsync<RpcException>(call);
            Assert.Equal(code, e.StatusCode);
            Assert.Contains(message, e.Status.Detail);
        }
        Assert.True((await client.ModelReadyAsync(new ModelReadyRequest { Name = "seg" }, Safe())).Ready);

        using var metrics = server.Metrics;
        Assert.Contains("protocol=\"oip_v2_grpc\"", await metrics.GetStringAsync("/metrics?name[]=ts_inference_requests_total"), StringComparison.Ordinal);
    }
}
