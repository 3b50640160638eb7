using System.Net;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>
/// A handler that postprocesses concurrently (BaseHandler.PostprocessConcurrently, as image_segmenter does): its one
/// worker runs the next batch's inference while the previous batch is still postprocessing, answers stay with their
/// requests and in order, a failing postprocess fails only its request, and unregistering waits for the batch in hand.
/// </summary>
[Collection("worker-core")]
public sealed class OverlappedPostprocessTests(GateStoreFixture store)
{
    private static readonly TimeSpan Safety = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task The_next_batch_runs_its_inference_while_the_previous_one_postprocesses()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["overlap=overlap.mar"], handlers: OverlapHandler.BuiltIn);
        await server.WaitReadyAsync("overlap");
        using var inference = server.Inference;
        var (a, b, key) = (Unique("a"), Unique("b"), Unique("gate"));

        var first = inference.PostAsync($"/predictions/overlap?hold={key}", new StringContent(a));
        await OverlapHandler.Signal($"postprocessing:{a}").Task.WaitAsync(Safety);
        var second = inference.PostAsync("/predictions/overlap", new StringContent(b));
        // One worker, and its first batch is held in postprocess: the second batch's inference still runs.
        await OverlapHandler.Signal($"inferred:{b}").Task.WaitAsync(Safety);
        Assert.False(first.IsCompleted);
        Assert.False(second.IsCompleted, "a batch's postprocess waits for the one before it");

        OverlapHandler.Signal($"gate:{key}").TrySetResult();
        Assert.Equal(a, await (await first.WaitAsync(Safety)).Content.ReadAsStringAsync());
        Assert.Equal(b, await (await second.WaitAsync(Safety)).Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_postprocess_that_fails_fails_its_request_only()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["overlap=overlap.mar"], handlers: OverlapHandler.BuiltIn);
        await server.WaitReadyAsync("overlap");
        using var inference = server.Inference;
        var failed = await inference.PostAsync("/predictions/overlap?fail=1", new StringContent(Unique("x"))).WaitAsync(Safety);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, failed.StatusCode);
        Assert.Contains("failed on purpose", await failed.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        var ok = Unique("y");
        Assert.Equal(ok, await (await inference.PostAsync("/predictions/overlap", new StringContent(ok)).WaitAsync(Safety)).Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Unregistering_waits_for_a_batch_that_is_still_postprocessing()
    {
        await using var server = await InProcessServer.StartAsync(store.Store, ["overlap=overlap.mar"], handlers: OverlapHandler.BuiltIn);
        await server.WaitReadyAsync("overlap");
        using var inference = server.Inference;
        using var management = server.Management;
        var (a, key) = (Unique("a"), Unique("gate"));

        var held = inference.PostAsync($"/predictions/overlap?hold={key}", new StringContent(a));
        await OverlapHandler.Signal($"postprocessing:{a}").Task.WaitAsync(Safety);
        var unregister = management.DeleteAsync("/models/overlap");
        OverlapHandler.Signal($"gate:{key}").TrySetResult();
        var answer = await held.WaitAsync(Safety);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal(a, await answer.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, (await unregister.WaitAsync(Safety)).StatusCode);
    }

    private static string Unique(string prefix) => $"{prefix}-{Guid.NewGuid():N}";
}
