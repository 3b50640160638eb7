using System.Net;
using System.Text;
using Google.Protobuf;
using Grpc.Net.Client;
using Org.Pytorch.Serve.Grpc.Inference;
using ServeSharp.Server.Grpc.Oip;
using ServeSharp.Tests.Grpc;
using ServeSharp.Tests.Protocols;
using ServeSharp.Tests.Support;
using static ServeSharp.Tests.Metrics.StageMetricsTests;

namespace ServeSharp.Tests.Metrics;

/// <summary>
/// The stage breakdown (servesharp_request_stage_seconds) on every inference API, not only TorchServe's REST one: real
/// predictions through each protocol's real client against the in-process host, then the metrics API scraped. The
/// protocol store's seg batches up to 4 with a 20 ms delay, so a lone request is a batch of one and its stages account
/// for its whole wall time.
/// </summary>
[Collection("protocols")]
public sealed class ProtocolStageMetricsTests(ProtocolStoreFixture store)
{
    private const int W = 32, H = 20;

    public static TheoryData<string> Protocols => new() { "torchserve_rest", "torchserve_grpc", "kserve_v1", "oip_v2_rest", "oip_v2_grpc" };

    [Theory]
    [MemberData(nameof(Protocols))]
    public async Task Each_protocols_predictions_are_counted_in_every_stage_and_sum_to_the_wall_time_within_5_percent(string protocol)
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["seg=seg.mar"]);
        await server.WaitReadyAsync("seg");
        // A first prediction warms the path up outside the count: on a cold one, JIT in the worker between its dispatch
        // and the handler's hooks (time no stage counts) can pass 5 % of the wall time.
        await PredictAsync(server, protocol, [Images.Noise(W, H, seed: 49).Png]);
        using var metrics = server.Metrics;
        var before = await metrics.GetStringAsync("/metrics");

        const int n = 3;
        for (var i = 0; i < n; i++) await PredictAsync(server, protocol, [Images.Noise(W, H, seed: 50 + i).Png]);

        var after = await metrics.GetStringAsync("/metrics");
        var (stageSum, wall) = AssertCounted(before, after, n);
        Assert.InRange(stageSum, wall * 0.95, wall * 1.05);
    }

    [Theory]
    [InlineData("kserve_v1")]
    [InlineData("oip_v2_rest")]
    public async Task A_request_of_several_instances_is_one_observation_whose_stages_do_not_exceed_its_wall_time(string protocol)
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["seg=seg.mar"]);
        await server.WaitReadyAsync("seg");
        using var metrics = server.Metrics;
        var before = await metrics.GetStringAsync("/metrics");

        await PredictAsync(server, protocol, [.. Enumerable.Range(60, 3).Select(seed => Images.Noise(W, H, seed).Png)]);

        var (stageSum, wall) = AssertCounted(before, await metrics.GetStringAsync("/metrics"), 1);
        // The instances share a batch: the observed one's stages leave out its batch-mates' pre- and postprocessing
        // (README: time no stage counts), so they may fall short of the wall time but never exceed it.
        Assert.InRange(stageSum, 0, wall * 1.05);
    }

    /// <summary>
    /// Every stage and the wall time counted <paramref name="n"/> more observations; the work stages took time. Returns
    /// the added sums of the stages and of the wall time.
    /// </summary>
    private static (double StageSum, double Wall) AssertCounted(string before, string after, int n)
    {
        double Delta(string series) => (TrySample(after, series) ?? 0) - (TrySample(before, series) ?? 0);
        var stageSum = 0.0;
        foreach (var stage in Stages)
        {
            Assert.Equal(n, Delta($"servesharp_request_stage_seconds_count{{model_name=\"seg\",stage=\"{stage}\"}}"));
            stageSum += Delta($"servesharp_request_stage_seconds_sum{{model_name=\"seg\",stage=\"{stage}\"}}");
        }
        foreach (var stage in (string[])["read_body", "queue_wait", "batch_formation", "inference", "write"])
            Assert.True(Delta($"servesharp_request_stage_seconds_sum{{model_name=\"seg\",stage=\"{stage}\"}}") > 0, stage);
        Assert.Equal(n, Delta("servesharp_request_seconds_count{model_name=\"seg\"}"));
        return (stageSum, Delta("servesharp_request_seconds_sum{model_name=\"seg\"}"));
    }

    /// <summary>One prediction of <paramref name="pngs"/> (one instance each) over <paramref name="protocol"/>, answered OK.</summary>
    private static async Task PredictAsync(InProcessServer server, string protocol, byte[][] pngs)
    {
        var b64 = pngs.Select(png => $"\"{Convert.ToBase64String(png)}\"");
        switch (protocol)
        {
            case "torchserve_rest":
                using (var http = server.Inference) await PostOkAsync(http, "/predictions/seg", new ByteArrayContent(Assert.Single(pngs)));
                break;
            case "torchserve_grpc":
                using (var grpc = new GrpcClients(server.GrpcInferenceUrl, server.GrpcManagementUrl))
                {
                    var answer = await grpc.Inference.PredictionsAsync(new PredictionsRequest { ModelName = "seg", Input = { ["data"] = ByteString.CopyFrom(Assert.Single(pngs)) } }, GrpcClients.Safe());
                    Assert.False(answer.Prediction.IsEmpty);
                }
                break;
            case "kserve_v1":
                using (var http = server.Inference)
                    await PostOkAsync(http, "/v1/models/seg:predict", new StringContent($$"""{"instances": [{{string.Join(',', b64)}}]}""", Encoding.UTF8, "application/json"));
                break;
            case "oip_v2_rest":
                using (var http = server.Inference)
                {
                    var body = $$"""{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [{{pngs.Length}}], "data": [{{string.Join(',', b64)}}]}]}""";
                    await PostOkAsync(http, "/v2/models/seg/infer", new StringContent(body, Encoding.UTF8, "application/json"));
                }
                break;
            case "oip_v2_grpc":
                using (var channel = GrpcChannel.ForAddress(server.GrpcInferenceUrl))
                {
                    var request = new ModelInferRequest { ModelName = "seg", Inputs = { new ModelInferRequest.Types.InferInputTensor { Name = "image", Datatype = "BYTES", Shape = { 1 } } } };
                    var png = Assert.Single(pngs);
                    request.RawInputContents.Add(ByteString.CopyFrom([.. BitConverter.GetBytes(png.Length), .. png]));
                    var answer = await new GRPCInferenceService.GRPCInferenceServiceClient(channel).ModelInferAsync(request, GrpcClients.Safe());
                    Assert.Single(answer.RawOutputContents);
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(protocol), protocol, "not an inference protocol");
        }
    }

    private static async Task PostOkAsync(HttpClient http, string path, HttpContent body)
    {
        using (body)
        using (var response = await http.PostAsync(path, body))
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
    }
}
