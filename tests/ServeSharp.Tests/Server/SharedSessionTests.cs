using System.Net;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>
/// model-config.yaml's <c>sharedSession: true</c>: the workers of a model run on one ONNX Runtime session, created once,
/// kept while any worker holds it (scale-down), and freed when the last one stops (unregister).
/// </summary>
public sealed class SharedSessionTests
{
    private const string Created = "created the ONNX Runtime session its workers share";
    private const string Freed = "freed the shared ONNX Runtime session";

    [Fact]
    public async Task Two_workers_serve_concurrently_on_one_session_that_outlives_a_scale_down_and_goes_with_the_model()
    {
        using var dir = new TempDir();
        var store = dir.Sub("model-store");
        TestArchives.Write(dir, store, "shared", "image_segmenter", "minWorkers: 2\nsharedSession: true\nhandler:\n  mode: torchserve\n  output: mask\n", TestModels.Tiny);
        await using var server = await InProcessServer.StartAsync(store, ["shared=shared.mar"]);
        await server.WaitReadyAsync("shared", workers: 2);
        using var inference = server.Inference;
        using var management = server.Management;

        var (_, png) = Images.Noise(320, 240, seed: 3);
        var answers = await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => PredictAsync(inference, png)));
        Assert.All(answers, status => Assert.Equal(HttpStatusCode.OK, status));
        var log = server.LogFile("model_log.log");
        Assert.Equal(1, Count(log, Created));
        Assert.Equal(0, Count(log, Freed));

        // The retired worker lets go of the session; the other still runs on it.
        Assert.Equal(HttpStatusCode.OK, (await management.PutAsync("/models/shared?min_worker=1&synchronous=true", null)).StatusCode);
        Assert.All(await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => PredictAsync(inference, png))), status => Assert.Equal(HttpStatusCode.OK, status));
        log = server.LogFile("model_log.log");
        Assert.Equal(1, Count(log, Created));
        Assert.Equal(0, Count(log, Freed));

        // Unregister stops the last worker, which frees it.
        Assert.Equal(HttpStatusCode.OK, (await management.DeleteAsync("/models/shared")).StatusCode);
        log = await server.WaitForLogAsync("model_log.log", text => text.Contains(Freed, StringComparison.Ordinal));
        Assert.Equal(1, Count(log, Created));
        Assert.Equal(1, Count(log, Freed));
    }

    [Fact]
    public async Task Without_the_key_each_worker_has_a_session_of_its_own()
    {
        using var dir = new TempDir();
        var store = dir.Sub("model-store");
        TestArchives.Write(dir, store, "own", "image_segmenter", "minWorkers: 2\nhandler:\n  mode: torchserve\n  output: mask\n", TestModels.Tiny);
        await using var server = await InProcessServer.StartAsync(store, ["own=own.mar"]);
        await server.WaitReadyAsync("own", workers: 2);
        using var inference = server.Inference;
        var (_, png) = Images.Noise(64, 48, seed: 4);
        Assert.Equal(HttpStatusCode.OK, await PredictAsync(inference, png, "own"));
        Assert.Equal(0, Count(server.LogFile("model_log.log"), Created));
    }

    private static async Task<HttpStatusCode> PredictAsync(HttpClient inference, byte[] png, string model = "shared")
    {
        using var body = new ByteArrayContent(png);
        body.Headers.ContentType = new MediaTypeHeaderValue("image/png");
        using var response = await inference.PostAsync($"/predictions/{model}", body);
        return response.StatusCode;
    }

    private static int Count(string text, string what) => Regex.Count(text, Regex.Escape(what));
}
