using System.Net;
using System.Text;
using System.Text.Json;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Deploy;

/// <summary>
/// A stop as Kubernetes sends it (SIGTERM, then SIGKILL after the grace period): readiness goes false, new requests
/// are refused, admitted ones are answered, and only then do the listeners close. In-process, with the handler the
/// tests open and close.
/// </summary>
[Collection("worker-core")]
public sealed class DrainTests(GateStoreFixture store)
{
    [Fact]
    public async Task Draining_refuses_new_requests_fails_readiness_and_answers_the_admitted_ones()
    {
        var kserve = ServerProcess.FreePort();
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], $"kserve_address=http://127.0.0.1:{kserve}", handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var inference = server.Inference;
        using var k = server.KServe;
        var admitted = inference.PostAsync("/predictions/gate?block=drain-admitted", new StringContent("admitted"));
        await GateHandler.Entered("drain-admitted").WaitAsync(TimeSpan.FromSeconds(60));

        var stopping = server.StopAsync();
        Assert.False(stopping.IsCompleted);
        using (var ping = await inference.GetAsync("/ping"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ping.StatusCode);
            Assert.Contains("Unhealthy", await ping.Content.ReadAsStringAsync());
        }
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await k.GetAsync("/v2/health/ready")).StatusCode);
        using (var refused = await inference.PostAsync("/predictions/gate", new StringContent("late")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.True(refused.Headers.ConnectionClose);
            Assert.Contains("shutting down", JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("message").GetString());
        }
        using (var refused = await k.PostAsync("/v1/models/gate:predict", new StringContent("""{"instances": ["late"]}""", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Contains("shutting down", JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString());
        }
        Assert.False(stopping.IsCompleted, "the stop must wait for the admitted request");

        GateHandler.Gate("drain-admitted").TrySetResult();
        using var answer = await admitted;
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Contains("admitted", await answer.Content.ReadAsStringAsync());
        await stopping.WaitAsync(TimeSpan.FromSeconds(60));
        await Assert.ThrowsAsync<HttpRequestException>(() => inference.GetAsync("/ping"));
    }

    [Fact]
    public async Task After_the_grace_period_requests_still_running_are_cancelled_and_the_stop_completes()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], "shutdown_grace_period=1", handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var inference = server.Inference;
        var running = inference.PostAsync("/predictions/gate?block=drain-grace", new StringContent("x"));
        await GateHandler.Entered("drain-grace").WaitAsync(TimeSpan.FromSeconds(60));

        // The gate is never opened: only the grace period can end this stop (the bound is far above one second).
        await server.StopAsync().WaitAsync(TimeSpan.FromSeconds(60));
        await GateHandler.Cancelled("drain-grace").WaitAsync(TimeSpan.FromSeconds(60)); // the job saw its client go
        await Assert.ThrowsAnyAsync<Exception>(() => running);
    }

    [Fact]
    public async Task A_second_signal_ends_the_drain_at_once()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["gate=gate.mar"], "shutdown_grace_period=3600", handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("gate");
        using var inference = server.Inference;
        var running = inference.PostAsync("/predictions/gate?block=drain-second", new StringContent("x"));
        await GateHandler.Entered("drain-second").WaitAsync(TimeSpan.FromSeconds(60));

        using var second = new CancellationTokenSource();
        var stopping = server.StopAsync(second.Token);
        Assert.False(stopping.IsCompleted);
        await second.CancelAsync();
        await stopping.WaitAsync(TimeSpan.FromSeconds(60)); // an hour's grace, so only the second signal ends it
        await GateHandler.Cancelled("drain-second").WaitAsync(TimeSpan.FromSeconds(60));
        await Assert.ThrowsAnyAsync<Exception>(() => running);
    }
}
