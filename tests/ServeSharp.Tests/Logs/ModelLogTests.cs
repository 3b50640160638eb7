using System.Net;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Logs;

/// <summary>Archives of the logging handler (tests/fixtures/handlers/logging_handler.cs), in a worker process and in-process.</summary>
public sealed class LoggingStoreFixture : IDisposable
{
    private readonly TempDir _root = new();

    public LoggingStoreFixture()
    {
        Store = _root.Sub("model-store");
        var handler = Path.Combine(Repo.Root, "tests", "fixtures", "handlers", "logging_handler.cs");
        TestArchives.Write(_root, Store, "logs_process", handler, "minWorkers: 1\nworkerIsolation: process\n");
        TestArchives.Write(_root, Store, "logs_inproc", handler, "minWorkers: 1\nworkerIsolation: in-process\n");
    }

    public string Store { get; }

    public void Dispose() => _root.Dispose();
}

/// <summary>model_log.log is what handlers log through the SDK's logger, wherever the handler runs (TorchServe's MODEL_LOG).</summary>
public sealed class ModelLogTests(LoggingStoreFixture store) : IClassFixture<LoggingStoreFixture>
{
    [Theory]
    [InlineData("logs_process")]
    [InlineData("logs_inproc")]
    public async Task A_handlers_log_lines_go_to_model_log_and_ts_log_and_the_servers_own_lines_do_not(string model)
    {
        await using var server = await InProcessServer.StartAsync(store.Store, [$"{model}={model}.mar"]);
        await server.WaitReadyAsync(model);
        var marker = "marker-" + Guid.NewGuid().ToString("N");
        using var inference = server.Inference;
        using var response = await inference.PostAsync($"/predictions/{model}", new StringContent(marker));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        var modelLog = await server.WaitForLogAsync("model_log.log", text => text.Contains(marker, StringComparison.Ordinal));
        Assert.Matches($@"\[(WARN |INFO )\] \S+ MODEL_LOG - .*logging_handler saw {marker}", modelLog);
        Assert.Contains($"logging_handler initialised for model {model}", modelLog);
        Assert.DoesNotContain("ServeSharp.ModelManager", modelLog);
        // TorchServe's MODEL_LOG also reaches its root logger, so ts_log.log has the line as well.
        Assert.Contains(marker, await server.WaitForLogAsync("ts_log.log", text => text.Contains(marker, StringComparison.Ordinal)));
    }
}
