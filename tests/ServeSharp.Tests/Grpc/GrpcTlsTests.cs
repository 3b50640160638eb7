using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Org.Pytorch.Serve.Grpc.Inference;
using Org.Pytorch.Serve.Grpc.Management;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;
using static ServeSharp.Tests.Grpc.GrpcClients;

namespace ServeSharp.Tests.Grpc;

/// <summary>enable_grpc_ssl: both gRPC ports speak TLS with the PEM pair of certificate_file / private_key_file.</summary>
[Collection("worker-core")]
public sealed class GrpcTlsTests(GateStoreFixture store)
{
    [Fact]
    public async Task With_enable_grpc_ssl_both_grpc_apis_answer_over_tls_with_the_configured_certificate()
    {
        using var certs = new TempDir();
        string cert = Path.Combine(certs.Path, "server.pem"), key = Path.Combine(certs.Path, "server.key");
        var (code, output) = Repo.Run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]);
        Assert.True(code == 0, $"openssl failed ({code}):\n{output}");
        using var expected = X509Certificate2.CreateFromPem(File.ReadAllText(cert));

        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"],
            $"enable_grpc_ssl=true\ncertificate_file={cert}\nprivate_key_file={key}", handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        Assert.Equal("https", server.GrpcInferenceUrl.Scheme);
        Assert.Equal("https", server.GrpcManagementUrl.Scheme);

        // Trust exactly the certificate made above: the client sees the server present the configured one.
        using var handler = new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, presented, _, _) => presented?.Thumbprint == expected.Thumbprint,
        };
        using var grpc = new GrpcClients(server.GrpcInferenceUrl, server.GrpcManagementUrl, handler);
        Assert.Contains("Healthy", (await grpc.Inference.PingAsync(new Empty(), Safe())).Health);
        var answer = await grpc.Inference.PredictionsAsync(new PredictionsRequest { ModelName = "gate", Input = { ["data"] = ByteString.CopyFromUtf8("tls") } }, Safe());
        Assert.Contains("\"tls\"", answer.Prediction.ToStringUtf8());
        Assert.Contains("gate", (await grpc.Management.ListModelsAsync(new ListModelsRequest(), Safe())).Msg);
    }
}
