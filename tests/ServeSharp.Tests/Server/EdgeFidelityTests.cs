using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using ServeSharp.Tests.Protocols;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>
/// What a TorchServe user's clients meet at the server's edge: HTTPS from TorchServe's certificate keys, CORS, TorchServe
/// 0.12's token rules and token API, and image bytes sent form-encoded — all over real HTTP, with curl where
/// TorchServe's docs use it.
/// </summary>
[Collection("protocols")]
public sealed class EdgeFidelityTests(ProtocolStoreFixture store)
{
    [Theory]
    [InlineData("pem")]
    [InlineData("pkcs12")]
    public async Task Https_listeners_serve_with_torchserves_certificate_keys(string kind)
    {
        using var certs = new TempDir();
        string cert = Path.Combine(certs.Path, "server.pem"), key = Path.Combine(certs.Path, "server.key"), p12 = Path.Combine(certs.Path, "keystore.p12");
        Openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1");
        Openssl("pkcs12", "-export", "-in", cert, "-inkey", key, "-out", p12, "-passout", "pass:changeit");
        var keys = kind == "pem" ? $"certificate_file={cert}\nprivate_key_file={key}" : $"keystore={p12}\nkeystore_pass=changeit\nkeystore_type=PKCS12";

        await using var server = await InProcessServer.StartAsync(store.Store, ["seg=seg.mar"], $"inference_address=https://127.0.0.1:0\n{keys}");
        Assert.Equal("https", server.InferenceUrl.Scheme);
        Assert.Equal("http", server.ManagementUrl.Scheme);
        await server.WaitReadyAsync("seg");

        // curl checks the server against the certificate made above (--cacert), so the configured one is what it presents.
        var (status, body) = ServerProcess.Curl("--cacert", cert, $"{server.InferenceUrl}predictions/seg", "-T", WritePng(certs));
        Assert.True(status == 200, body);
        Assert.Contains("Healthy", ServerProcess.Curl("--cacert", cert, $"{server.InferenceUrl}ping").Body);
        // Plain http on the https port is not served.
        Assert.NotEqual("200", Repo.Run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", $"http://127.0.0.1:{server.InferenceUrl.Port}/ping"]).Output.Trim());
    }

    [Fact]
    public async Task A_missing_certificate_is_a_start_error_naming_the_keys()
    {
        var error = await Assert.ThrowsAsync<FormatException>(() => InProcessServer.StartAsync(store.Store, [], "inference_address=https://127.0.0.1:0"));
        Assert.Contains("certificate_file and private_key_file", error.Message);
        error = await Assert.ThrowsAsync<FormatException>(() => InProcessServer.StartAsync(store.Store, [], "inference_address=https://127.0.0.1:0\nkeystore=/no/such.p12\nkeystore_pass=x"));
        Assert.Contains("keystore /no/such.p12", error.Message);
    }

    [Fact]
    public async Task Cors_answers_preflights_and_labels_answers_for_the_allowed_origin_only()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["seg=seg.mar"],
            "cors_allowed_origin=https://app.example\ncors_allowed_methods=GET, POST, PUT, OPTIONS\ncors_allowed_headers=*");
        using var client = server.Inference;

        using var preflight = new HttpRequestMessage(HttpMethod.Options, "/predictions/seg");
        preflight.Headers.Add("Origin", "https://app.example");
        preflight.Headers.Add("Access-Control-Request-Method", "POST");
        preflight.Headers.Add("Access-Control-Request-Headers", "authorization, content-type");
        using var answer = await client.SendAsync(preflight);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal("https://app.example", Header(answer, "Access-Control-Allow-Origin"));
        Assert.Equal("GET, POST, PUT, OPTIONS", Header(answer, "Access-Control-Allow-Methods"));
        Assert.Equal("authorization, content-type", Header(answer, "Access-Control-Allow-Headers"));

        await server.WaitReadyAsync("seg");
        using var simple = new HttpRequestMessage(HttpMethod.Post, "/predictions/seg") { Content = new ByteArrayContent(Images.SolidPng(8, 8, 10, 20, 30)) };
        simple.Headers.Add("Origin", "https://app.example");
        using var served = await client.SendAsync(simple);
        Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        Assert.Equal("https://app.example", Header(served, "Access-Control-Allow-Origin"));

        using var foreign = new HttpRequestMessage(HttpMethod.Options, "/predictions/seg");
        foreign.Headers.Add("Origin", "https://evil.example");
        foreign.Headers.Add("Access-Control-Request-Method", "POST");
        using var refused = await client.SendAsync(foreign);
        Assert.Null(Header(refused, "Access-Control-Allow-Origin"));
    }

    [Fact]
    public async Task Without_cors_settings_no_cors_headers_are_sent()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, []);
        using var client = server.Inference;
        using var request = new HttpRequestMessage(HttpMethod.Get, "/ping");
        request.Headers.Add("Origin", "https://app.example");
        using var answer = await client.SendAsync(request);
        Assert.Null(Header(answer, "Access-Control-Allow-Origin"));
    }

    [Fact]
    public async Task Tokens_follow_torchserve_0_12_api_key_token_api_400_and_expiry()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await InProcessServer.StartAsync(store.Store, [], "disable_token_authorization=false\ntoken_expiration_min=30", time);
        var keyFile = Path.Combine(server.Directory, "key_file.json");
        if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyFile));
        var keys = Keys(keyFile);
        Assert.Equal(time.GetUtcNow().AddMinutes(30).UtcDateTime, DateTime.Parse(keys.GetProperty("inference").GetProperty("expiration time").GetString()!,
            System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AdjustToUniversal), TimeSpan.FromSeconds(1));
        string inference = Key(keys, "inference"), management = Key(keys, "management"), api = Key(keys, "API");
        // Batches of one: with the fake clock standing still, a batch never waits for max_batch_delay.
        var (registered, registerBody) = Curl(management, $"{server.ManagementUrl}models?url=seg.mar&model_name=seg1&batch_size=1&initial_workers=1&synchronous=true", "-X", "POST");
        Assert.True(registered == 200, registerBody);
        var image = WritePng(server.Directory);
        var url = $"{server.InferenceUrl}predictions/seg1";

        Assert.Equal(200, Curl(inference, url, "-T", image).Status);
        var (wrong, wrongBody) = Curl("wrong", url, "-T", image);
        Assert.Equal(400, wrong);
        Assert.Equal("InvalidKeyException", JsonDocument.Parse(wrongBody).RootElement.GetProperty("type").GetString());
        Assert.Equal(400, Curl(management, url, "-T", image).Status); // the management key is not the inference key

        // The token API: only with the API key; it replaces the inference key in the file, and only the new one works.
        Assert.Equal(400, Curl(management, $"{server.ManagementUrl}token?type=inference").Status);
        Assert.Equal(400, Curl(api, $"{server.ManagementUrl}token?type=everything").Status);
        Assert.Equal(200, Curl(api, $"{server.ManagementUrl}token?type=inference").Status);
        var replaced = Key(Keys(keyFile), "inference");
        Assert.NotEqual(inference, replaced);
        Assert.Equal(management, Key(Keys(keyFile), "management"));
        Assert.Equal(400, Curl(inference, url, "-T", image).Status);
        Assert.Equal(200, Curl(replaced, url, "-T", image).Status);

        // 30 minutes later both keys have expired (400); the API key has not, and a fresh key works again.
        time.Advance(TimeSpan.FromMinutes(30));
        Assert.Equal(400, Curl(replaced, url, "-T", image).Status);
        Assert.Equal(400, Curl(management, $"{server.ManagementUrl}models").Status);
        Assert.Equal(200, Curl(api, $"{server.ManagementUrl}token?type=management").Status);
        Assert.Equal(200, Curl(Key(Keys(keyFile), "management"), $"{server.ManagementUrl}models").Status);

        await server.StopAsync();
        Assert.False(File.Exists(keyFile), "TorchServe removes key_file.json when it stops");
    }

    [Fact]
    public async Task Image_bytes_sent_form_encoded_are_the_image_and_a_real_form_is_still_a_form()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["seg=seg.mar"]);
        await server.WaitReadyAsync("seg");
        var image = WritePng(server.Directory);
        var url = $"{server.InferenceUrl}predictions/seg";
        var (expected, expectedBody) = ServerProcess.Curl(url, "-T", image);
        Assert.Equal(200, expected);
        // curl --data-binary sends Content-Type: application/x-www-form-urlencoded, as Python's urllib does.
        var (status, body) = ServerProcess.Curl("--data-binary", $"@{image}", url);
        Assert.True(status == 200, body);
        Assert.Equal(expectedBody, body);
        // A real form still parses as one: the image travels base64-free only in multipart, so a text form without
        // "data" or "body" reaches the handler as fields, and the handler says what it lacks.
        var (formStatus, formBody) = ServerProcess.Curl("--data", "note=hello&other=1", url);
        Assert.Equal(400, formStatus);
        Assert.DoesNotContain("Malformed", formBody);
    }

    private static (int Status, string Body) Curl(string key, string url, params string[] rest) =>
        ServerProcess.Curl(["-H", $"Authorization: Bearer {key}", url, .. rest]);

    private static JsonElement Keys(string keyFile) => JsonDocument.Parse(File.ReadAllText(keyFile)).RootElement;

    private static string Key(JsonElement keys, string name) => keys.GetProperty(name).GetProperty("key").GetString()!;

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(", ", values) : null;

    private static string WritePng(TempDir dir) => WritePng(dir.Path);

    private static string WritePng(string dir)
    {
        var path = Path.Combine(dir, "input.png");
        File.WriteAllBytes(path, Images.Noise(24, 16, seed: 3).Png);
        return path;
    }

    private static void Openssl(params string[] args)
    {
        var (code, output) = Repo.Run("openssl", args);
        Assert.True(code == 0, $"openssl {args[0]} failed ({code}):\n{output}");
    }
}
