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

/// <summary>
/// TorchServe's gRPC APIs on the in-process host, called by a real gRPC client: every RPC of both services, the same
/// answers as REST, TorchServe's status codes, deadlines that cancel the job, streams, and a full queue.
/// </summary>
[Collection("worker-core")]
public sealed class GrpcApiTests(GateStoreFixture store)
{
    private static readonly TimeSpan Safety = TimeSpan.FromSeconds(60);

    private static PredictionsRequest Request(string model, params (string Name, string Value)[] inputs)
    {
        var request = new PredictionsRequest { ModelName = model };
        foreach (var (name, value) in inputs) request.Input[name] = ByteString.CopyFromUtf8(value);
        return request;
    }

    [Fact]
    public async Task Ping_predictions_and_stream_predictions_answer_what_rest_answers()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["seg=seg.mar"], handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("seg");
        using var grpc = new GrpcClients(server.GrpcInferenceUrl, server.GrpcManagementUrl);
        using var inference = server.Inference;

        var ping = await grpc.Inference.PingAsync(new Empty(), Safe());
        Assert.Equal(await inference.GetStringAsync("/ping"), ping.Health);

        var image = Images.SolidPng(24, 16, 200, 30, 30);
        using var rest = await inference.PostAsync("/predictions/seg", new ByteArrayContent(image));
        var expected = await rest.Content.ReadAsByteArrayAsync();
        var request = new PredictionsRequest { ModelName = "seg", Input = { ["data"] = ByteString.CopyFrom(image) } };
        var answer = await grpc.Inference.PredictionsAsync(request, Safe());
        Assert.Equal(expected, answer.Prediction.ToByteArray());

        using var stream = grpc.Inference.StreamPredictions(request, Safe());
        var streamed = await stream.ResponseStream.ReadAllAsync().ToListAsync();
        Assert.Equal(expected, Assert.Single(streamed).Prediction.ToByteArray());
    }

    [Fact]
    public async Task Stream_predictions2_answers_twenty_requests_in_order_on_one_call_and_a_failed_one_in_band()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var grpc = new GrpcClients(server.GrpcInferenceUrl, server.GrpcManagementUrl);

        using var call = grpc.Inference.StreamPredictions2(Safe());
        var reading = call.ResponseStream.ReadAllAsync().ToListAsync().AsTask();
        for (var i = 0; i < 20; i++)
        {
            var request = Request(i == 7 ? "no_such_model" : "gate", ("data", $"message {i}"));
            request.SequenceId = "seq-1";
            await call.RequestStream.WriteAsync(request);
        }
        await call.RequestStream.CompleteAsync();
        var answers = await reading.WaitAsync(Safety);

        Assert.Equal(20, answers.Count);
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("seq-1", answers[i].SequenceId);
            if (i == 7)
            {
                Assert.Equal((int)StatusCode.NotFound, answers[i].Status.Code);
                Assert.Equal("Model not found: no_such_model", answers[i].Status.Message);
                continue;
            }
            Assert.Null(answers[i].Status);
            Assert.Equal($"message {i}", JsonDocument.Parse(answers[i].Prediction.Memory).RootElement.GetProperty("body").GetString());
        }
    }

    [Fact]
    public async Task Management_rpcs_answer_the_rest_apis_text_and_json()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var grpc = new GrpcClients(server.GrpcInferenceUrl, server.GrpcManagementUrl);
        using var management = server.Management;
        var m = grpc.Management;

        var registered = await m.RegisterModelAsync(new RegisterModelRequest { Url = "gate.mar", ModelName = "g2", InitialWorkers = 1, Synchronous = true }, Safe());
        Assert.Equal("Model \"g2\" Version: 1.0 registered with 1 initial workers", registered.Msg);
        Assert.Equal(await management.GetStringAsync("/models"), (await m.ListModelsAsync(new ListModelsRequest(), Safe())).Msg);
        Assert.Equal(await management.GetStringAsync("/models?limit=1"), (await m.ListModelsAsync(new ListModelsRequest { Limit = 1 }, Safe())).Msg);

        var described = JsonDocument.Parse((await m.DescribeModelAsync(new DescribeModelRequest { ModelName = "g2" }, Safe())).Msg).RootElement;
        var rest = JsonDocument.Parse(await management.GetStringAsync("/models/g2")).RootElement;
        Assert.Equal(rest[0].GetProperty("modelName").GetString(), described[0].GetProperty("modelName").GetString());
        Assert.Equal(rest[0].GetProperty("workers").GetArrayLength(), described[0].GetProperty("workers").GetArrayLength());
        Assert.Equal(rest[0].GetProperty("minWorkers").GetInt32(), described[0].GetProperty("minWorkers").GetInt32());

        var scaled = await m.ScaleWorkerAsync(new ScaleWorkerRequest { ModelName = "g2", MinWorker = 2, Synchronous = true }, Safe());
        Assert.Equal("Workers scaled to 2 for model: g2", scaled.Msg); // TorchServe names the version only when the call did
        var set = await m.SetDefaultAsync(new SetDefaultRequest { ModelName = "g2", ModelVersion = "1.0" }, Safe());
        Assert.Equal("Default version successfully updated for model \"g2\" to \"1.0\"", set.Msg);
        var unregistered = await m.UnregisterModelAsync(new UnregisterModelRequest { ModelName = "g2" }, Safe());
        Assert.Equal("Model \"g2\" unregistered", unregistered.Msg);

        var gone = await Assert.ThrowsAsync<RpcException>(() => m.DescribeModelAsync(new DescribeModelRequest { ModelName = "g2" }, Safe()).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, gone.StatusCode);
        Assert.Equal("Model not found: g2", gone.Status.Detail);
    }

    [Fact]
    public async Task Refusals_take_torchserves_status_codes_and_count_in_the_request_metrics()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var grpc = new GrpcClients(server.GrpcInferenceUrl, server.GrpcManagementUrl);
        using var metrics = server.Metrics;
        var before = await CountAsync(metrics, "Requests4XX");

        async Task<RpcException> Refused<T>(AsyncUnaryCall<T> call) => await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync);

        var missing = await Refused(grpc.Inference.PredictionsAsync(Request("no_such_model", ("data", "x")), Safe()));
        Assert.Equal(StatusCode.NotFound, missing.StatusCode);
        Assert.Equal("Model not found: no_such_model", missing.Status.Detail);
        Assert.Equal(StatusCode.NotFound, (await Refused(grpc.Inference.PredictionsAsync(new PredictionsRequest { ModelName = "gate", ModelVersion = "9.9" }, Safe()))).StatusCode);
        Assert.Equal(StatusCode.InvalidArgument, (await Refused(grpc.Inference.PredictionsAsync(Request("", ("data", "x")), Safe()))).StatusCode);
        Assert.Equal(StatusCode.InvalidArgument, (await Refused(grpc.Management.ScaleWorkerAsync(new ScaleWorkerRequest { ModelName = "gate", MinWorker = 2, MaxWorker = 1 }, Safe()))).StatusCode);
        Assert.Equal(StatusCode.InvalidArgument, (await Refused(grpc.Management.RegisterModelAsync(new RegisterModelRequest(), Safe()))).StatusCode);
        Assert.Equal(StatusCode.Unimplemented, (await Refused(grpc.ManagementOnInferencePort.ListModelsAsync(new ListModelsRequest(), Safe()))).StatusCode);

        Assert.True(await CountAsync(metrics, "Requests4XX") >= before + 5);
        var ok = await CountAsync(metrics, "Requests2XX");
        await grpc.Inference.PredictionsAsync(Request("gate", ("data", "x")), Safe());
        Assert.Equal(ok + 1, await CountAsync(metrics, "Requests2XX")); // scrapes are not counted
    }

    [Fact]
    public async Task A_passed_deadline_cancels_the_job_in_the_handler_and_the_model_serves_after()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var grpc = new GrpcClients(server.GrpcInferenceUrl, server.GrpcManagementUrl);
        var key = "grpc-deadline-" + Guid.NewGuid().ToString("N");

        var call = grpc.Inference.PredictionsAsync(Request("gate", ("data", "x"), ("block", key)), deadline: DateTime.UtcNow.AddSeconds(1));
        await GateHandler.Entered(key).WaitAsync(Safety);
        var expired = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(Safety));
        Assert.Equal(StatusCode.DeadlineExceeded, expired.StatusCode);
        await GateHandler.Cancelled(key).WaitAsync(Safety);

        // One worker: it answers only if the cancelled batch let it go.
        var after = await grpc.Inference.PredictionsAsync(Request("gate", ("data", "after")), Safe());
        Assert.Equal("after", JsonDocument.Parse(after.Prediction.Memory).RootElement.GetProperty("body").GetString());
    }

    [Fact]
    public async Task A_full_job_queue_answers_unavailable_at_once_and_the_admitted_calls_finish()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], "job_queue_size=1", handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var grpc = new GrpcClients(server.GrpcInferenceUrl, server.GrpcManagementUrl);
        var key = "grpc-full-" + Guid.NewGuid().ToString("N");

        var blocked = grpc.Inference.PredictionsAsync(Request("gate", ("data", "first"), ("block", key)), Safe()).ResponseAsync;
        await GateHandler.Entered(key).WaitAsync(Safety);
        // The worker is busy; the queue holds one, the aggregator at most one more: of five, some must be refused.
        var rest = Enumerable.Range(0, 5).Select(i => grpc.Inference.PredictionsAsync(Request("gate", ("data", $"r{i}")), Safe()).ResponseAsync).ToList();
        var refusedFirst = await Task.WhenAny(rest).WaitAsync(Safety);
        var refused = await Assert.ThrowsAsync<RpcException>(() => refusedFirst);
        Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
        Assert.Contains("job queue is full", refused.Status.Detail);

        GateHandler.Gate(key).TrySetResult();
        await blocked.WaitAsync(Safety);
        foreach (var call in rest)
        {
            try
            {
                await call.WaitAsync(Safety);
            }
            catch (RpcException e)
            {
                Assert.Equal(StatusCode.Unavailable, e.StatusCode);
            }
        }
        Assert.Contains(rest, c => c.IsCompletedSuccessfully);
    }

    [Fact]
    public async Task A_python_grpcio_client_with_stubs_generated_from_our_protos_pings_predicts_lists_and_describes()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var stubs = new TempDir();
        var protos = Path.Combine(Repo.Root, "src", "ServeSharp.Server", "Protos");
        // Debian's grpc_tools bundles protoc 3.5, older than proto3's `optional` (TorchServe's sequenceId uses it): Debian's
        // protoc 3.21 with gRPC's Python plugin generates the same stubs.
        var (code, output) = Repo.Run("protoc", ["-I", protos, $"--python_out={stubs.Path}", $"--grpc_python_out={stubs.Path}",
            "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin", "inference.proto", "management.proto", "google/rpc/status.proto"]);
        Assert.True(code == 0, $"protoc failed ({code}):\n{output}");

        var script = Path.Combine(Repo.Root, "tests", "fixtures", "grpc", "client.py");
        (code, output) = Repo.Run(Repo.Python, [script, stubs.Path, server.GrpcInferenceUrl.Authority, server.GrpcManagementUrl.Authority, "gate"], timeoutSeconds: 120);
        Assert.True(code == 0, $"client.py failed ({code}):\n{output}");
        var answers = JsonDocument.Parse(output.Trim().Split('\n')[^1]).RootElement;

        using var inference = server.Inference;
        using var management = server.Management;
        Assert.Equal(await inference.GetStringAsync("/ping"), answers.GetProperty("ping").GetString());
        Assert.Contains("from python", answers.GetProperty("prediction").GetString());
        Assert.Equal("NOT_FOUND", answers.GetProperty("missing").GetString());
        Assert.Equal(await management.GetStringAsync("/models"), answers.GetProperty("list").GetString());
        Assert.Equal("gate", JsonDocument.Parse(answers.GetProperty("describe").GetString()!).RootElement[0].GetProperty("modelName").GetString());
    }

    private static async Task<double> CountAsync(HttpClient metrics, string name)
    {
        var text = await metrics.GetStringAsync($"/metrics?name[]={name}");
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith(name + "{", StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }
}
