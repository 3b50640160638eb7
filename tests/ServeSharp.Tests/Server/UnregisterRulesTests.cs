using System.Collections.Concurrent;
using System.Text.Json;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Org.Pytorch.Serve.Grpc.Management;
using ServeSharp.Tests.Grpc;
using ServeSharp.Tests.Support;
using static ServeSharp.Tests.Server.ManagementFidelityTests;

namespace ServeSharp.Tests.Server;

/// <summary>
/// TorchServe's unregister rules (the default version goes last: 403 while others are registered), removal of the
/// archives registration downloaded, and allowed_urls on every download, redirects included — against a real
/// Kestrel serving archives on loopback.
/// </summary>
[Collection("management")]
public sealed class UnregisterRulesTests(ManagementStoreFixture fixture) : IAsyncLifetime, IDisposable
{
    private readonly TempDir _dir = new();
    private ArchiveHost _host = null!;
    private string _store = null!;

    public async Task InitializeAsync()
    {
        _store = _dir.Sub("model-store");
        foreach (var file in new[] { "tiny.mar", "multi-v1.mar", "multi-v2.mar" }) File.Copy(Path.Combine(fixture.Store, file), Path.Combine(_store, file));
        _host = await ArchiveHost.StartAsync(fixture.Bytes("tiny.mar"));
    }

    public async Task DisposeAsync() => await _host.DisposeAsync();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task The_default_version_cannot_be_unregistered_while_other_versions_are_registered()
    {
        await using var server = await StartAsync();
        using var m = server.Management;
        Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=multi-v1.mar")).Status);
        Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=multi-v2.mar")).Status);

        foreach (var path in new[] { "/models/multi/1.0", "/models/multi" })
        {
            var (status, body) = await SendAsync(m, "DELETE", path);
            Assert.Equal(403, status);
            var error = JsonDocument.Parse(body).RootElement;
            Assert.Equal((403, "InvalidModelVersionException", "Cannot remove default version for model multi"),
                (error.GetProperty("code").GetInt32(), error.GetProperty("type").GetString(), error.GetProperty("message").GetString()));
        }
        Assert.Equal(2, JsonDocument.Parse((await SendAsync(m, "GET", "/models/multi/all")).Body).RootElement.GetArrayLength());

        // gRPC refuses the same way (TorchServe's 403 is PERMISSION_DENIED).
        using (var grpc = new GrpcClients(server.GrpcInferenceUrl, server.GrpcManagementUrl))
        {
            var refused = await Assert.ThrowsAsync<RpcException>(() => grpc.Management.UnregisterModelAsync(
                new UnregisterModelRequest { ModelName = "multi", ModelVersion = "1.0" }, GrpcClients.Safe()).ResponseAsync);
            Assert.Equal((StatusCode.PermissionDenied, "Cannot remove default version for model multi"), (refused.StatusCode, refused.Status.Detail));
        }

        // Another default first, then the old one may go; the last version goes as the model does.
        Assert.Equal(200, (await SendAsync(m, "PUT", "/models/multi/2.0/set-default")).Status);
        Assert.Equal((200, "{\n  \"status\": \"Model \\\"multi\\\" unregistered\"\n}"), await SendAsync(m, "DELETE", "/models/multi/1.0"));
        Assert.Equal("2.0", (await DescribeAsync(m, "/models/multi")).GetProperty("modelVersion").GetString());
        Assert.Equal(200, (await SendAsync(m, "DELETE", "/models/multi")).Status);
        Assert.Equal(404, (await SendAsync(m, "GET", "/models/multi")).Status);
    }

    [Fact]
    public async Task Unregister_deletes_an_archive_register_downloaded_but_not_one_the_user_put_in_the_store()
    {
        await using var server = await StartAsync();
        using var m = server.Management;
        var url = Uri.EscapeDataString($"{_host.Url}/archives/downloaded.mar");
        var (status, body) = await SendAsync(m, "POST", $"/models?url={url}&model_name=downloaded&initial_workers=1");
        Assert.True(status == 200, body);
        var downloaded = Path.Combine(_store, "downloaded.mar");
        Assert.True(File.Exists(downloaded));
        Assert.Equal($"{_host.Url}/archives/downloaded.mar", (await DescribeAsync(m, "/models/downloaded")).GetProperty("modelUrl").GetString());

        // While it is there, registering the same file name again is TorchServe's 500, and downloads nothing.
        (status, body) = await SendAsync(m, "POST", $"/models?url={url}&model_name=again");
        Assert.Equal(500, status);
        Assert.Contains("Model file already exists downloaded.mar", body);
        Assert.Equal(1, _host.Hits("downloaded.mar"));

        Assert.Equal(200, (await SendAsync(m, "DELETE", "/models/downloaded")).Status);
        Assert.False(File.Exists(downloaded));

        Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=tiny.mar")).Status);
        Assert.Equal(200, (await SendAsync(m, "DELETE", "/models/tiny")).Status);
        Assert.True(File.Exists(Path.Combine(_store, "tiny.mar")));
    }

    [Fact]
    public async Task A_redirect_is_followed_only_to_an_allowed_url()
    {
        await using var server = await StartAsync();
        using var m = server.Management;

        // Allowed hop: followed; the archive keeps the name the client asked for.
        var (status, body) = await SendAsync(m, "POST", $"/models?url={Uri.EscapeDataString($"{_host.Url}/redirect/allowed/hop.mar")}&model_name=hop");
        Assert.True(status == 200, body);
        Assert.True(File.Exists(Path.Combine(_store, "hop.mar")));

        // A hop to a host allowed_urls does not name is refused before it is fetched.
        (status, body) = await SendAsync(m, "POST", $"/models?url={Uri.EscapeDataString($"{_host.Url}/redirect/elsewhere/away.mar")}");
        Assert.Equal(404, status);
        Assert.Contains($"redirects to {_host.Url.Replace("127.0.0.1", "localhost", StringComparison.Ordinal)}/archives/away.mar, which does not match any allowed URL(s)", body);
        Assert.Equal(0, _host.Hits("away.mar"));
        Assert.False(File.Exists(Path.Combine(_store, "away.mar")));

        (status, body) = await SendAsync(m, "POST", $"/models?url={Uri.EscapeDataString($"{_host.Url}/redirect/file/passwd.mar")}");
        Assert.Equal(404, status);
        Assert.Contains("redirects to file:///etc/passwd, which is not an http(s) URL", body);

        (status, body) = await SendAsync(m, "POST", $"/models?url={Uri.EscapeDataString($"{_host.Url}/redirect/loop/loop.mar")}");
        Assert.Equal(400, status);
        Assert.Contains("more than 10 redirects", body);
        Assert.Equal(["hop.mar", "multi-v1.mar", "multi-v2.mar", "tiny.mar"], Directory.GetFiles(_store).Select(Path.GetFileName).Order());
    }

    [Fact]
    public async Task Download_failures_answer_as_torchserve_and_leave_nothing_in_the_store()
    {
        await using var server = await StartAsync();
        using var m = server.Management;
        var (status, body) = await SendAsync(m, "POST", "/models?url=https://example.com/m.mar");
        Assert.Equal(404, status);
        Assert.Contains("Given URL https://example.com/m.mar does not match any allowed URL(s)", body);

        (status, body) = await SendAsync(m, "POST", $"/models?url={Uri.EscapeDataString($"{_host.Url}/missing/gone.mar")}");
        Assert.Equal(400, status);
        Assert.Equal("DownloadArchiveException", JsonDocument.Parse(body).RootElement.GetProperty("type").GetString());
        Assert.Contains($"Failed to download archive from: {_host.Url}/missing/gone.mar", body);

        // Downloaded, but not an archive: the registration fails and the file goes.
        (status, body) = await SendAsync(m, "POST", $"/models?url={Uri.EscapeDataString($"{_host.Url}/garbage/junk.mar")}");
        Assert.Equal(400, status);
        Assert.Equal(1, _host.Hits("junk.mar"));
        Assert.Equal(["multi-v1.mar", "multi-v2.mar", "tiny.mar"], Directory.GetFiles(_store).Select(Path.GetFileName).Order());
    }

    private Task<InProcessServer> StartAsync() =>
        InProcessServer.StartAsync(_store, properties: @"allowed_urls=http://127\\.0\\.0\\.1:\\d+/.*", handlers: GateHandler.BuiltIn);

    /// <summary>A real Kestrel on loopback that serves an archive, redirects, a 404 and junk, and counts what was fetched.</summary>
    private sealed class ArchiveHost : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly ConcurrentDictionary<string, int> _hits = new();

        private ArchiveHost(WebApplication app) => _app = app;

        public string Url { get; private set; } = "";

        public int Hits(string name) => _hits.GetValueOrDefault(name);

        public static async Task<ArchiveHost> StartAsync(byte[] archive)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            var app = builder.Build();
            var host = new ArchiveHost(app);
            app.MapGet("/archives/{name}", (string name) => { host.Count(name); return Results.Bytes(archive, "application/octet-stream"); });
            app.MapGet("/garbage/{name}", (string name) => { host.Count(name); return Results.Bytes("not a zip"u8.ToArray(), "application/octet-stream"); });
            app.MapGet("/missing/{name}", () => Results.NotFound());
            app.MapGet("/redirect/allowed/{name}", (string name) => Results.Redirect($"{host.Url}/archives/{name}"));
            app.MapGet("/redirect/elsewhere/{name}", (string name) => Results.Redirect($"{host.Url.Replace("127.0.0.1", "localhost", StringComparison.Ordinal)}/archives/{name}"));
            app.MapGet("/redirect/file/{name}", () => Results.Redirect("file:///etc/passwd"));
            app.MapGet("/redirect/loop/{name}", (HttpContext http) => Results.Redirect(http.Request.Path));
            await app.StartAsync();
            host.Url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
            return host;
        }

        private void Count(string name) => _hits.AddOrUpdate(name, 1, (_, n) => n + 1);

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
