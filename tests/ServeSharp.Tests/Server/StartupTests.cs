using System.Net;
using System.Text.Json;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

[Collection("server")]
public sealed class StartupTests(ModelStoreFixture store)
{
    [Fact]
    public async Task Ping_is_unhealthy_while_a_model_has_fewer_workers_than_min_workers()
    {
        await using var server = ServerProcess.Start(store.NewWorkDir(), store.Store, ["--models", "slowload=slowload.mar", "--ncs", "--disable-token-auth"]);
        using var inference = server.Inference;
        var early = await inference.GetAsync("/ping");
        Assert.Equal(HttpStatusCode.InternalServerError, early.StatusCode);
        Assert.Equal("Unhealthy", JsonDocument.Parse(await early.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString());
        // A request sent while the worker loads waits for it rather than failing.
        var queued = await inference.PostAsync("/predictions/slowload", new StringContent("early"));
        Assert.Equal(HttpStatusCode.OK, queued.StatusCode);
        await server.WaitHealthyAsync();
    }

    [Fact]
    public async Task A_second_start_is_refused_and_a_bad_archive_does_not_stop_the_server()
    {
        var dir = store.NewWorkDir();
        await using var server = ServerProcess.Start(dir, store.Store, ["--models", "probe=probe.mar", "broken=nothere.mar", "--ncs", "--disable-token-auth"]);
        await server.WaitHealthyAsync();
        using var inference = server.Inference;
        Assert.Equal(HttpStatusCode.OK, (await inference.PostAsync("/predictions/probe", new StringContent("x"))).StatusCode);
        Assert.Contains("Failed to load model nothere.mar", server.LogFile("ts_log.log"));

        var (code, output) = Repo.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "servesharp.dll"), "--start", "--ts-config", "config.properties"], dir, 60,
            new Dictionary<string, string> { ["SERVESHARP_PID_FILE"] = Path.Combine(dir, "servesharp.pid") });
        Assert.Equal(1, code);
        Assert.Contains("already running", output);
    }
}
