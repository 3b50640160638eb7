using System.Text.RegularExpressions;
using Google.Protobuf.WellKnownTypes;
using ServeSharp.Tests.Grpc;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Logs;

/// <summary>access_log.log as TorchServe writes it: one line per request, whatever the API, status or protocol.</summary>
[Collection("worker-core")]
public sealed class AccessLogTests(GateStoreFixture store)
{
    private const string Stamp = @"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3}";

    [Fact]
    public async Task Every_request_gets_one_line_with_client_request_line_status_and_milliseconds()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        var inference = server.InferenceUrl.ToString().TrimEnd('/');
        var management = server.ManagementUrl.ToString().TrimEnd('/');
        Assert.Equal(200, ServerProcess.Curl("-X", "POST", $"{inference}/predictions/gate", "-d", "x").Status);
        Assert.Equal(404, ServerProcess.Curl($"{inference}/no/such/path").Status);
        Assert.Equal(200, ServerProcess.Curl($"{management}/models?limit=1").Status);
        Assert.Equal(404, ServerProcess.Curl("-X", "DELETE", $"{management}/models/nothere").Status);
        using (var grpc = new GrpcClients(server.GrpcInferenceUrl, server.GrpcManagementUrl))
            await grpc.Inference.PingAsync(new Empty(), GrpcClients.Safe());

        string[] expected =
        [
            @"""POST /predictions/gate HTTP/1\.1"" 200",
            @"""GET /no/such/path HTTP/1\.1"" 404",
            @"""GET /models\?limit=1 HTTP/1\.1"" 200",
            @"""DELETE /models/nothere HTTP/1\.1"" 404",
            @"""gRPC org\.pytorch\.serve\.grpc\.inference\.InferenceAPIsService/Ping HTTP/2\.0"" 0",
        ];
        var log = await server.WaitForLogAsync("access_log.log", text => expected.All(e => Regex.IsMatch(text, e)));
        foreach (var line in expected)
        {
            // TorchServe's "%d{ISO8601} - %m": /client:port "METHOD target PROTOCOL" status milliseconds.
            var matches = Regex.Matches(log, $@"^{Stamp} - /127\.0\.0\.1:\d+ {line} \d+$", RegexOptions.Multiline);
            Assert.True(matches.Count == 1, $"expected one line matching {line}:\n{log}");
        }
        Assert.Contains("ACCESS_LOG - /127.0.0.1:", server.LogFile("ts_log.log"));
    }
}
