using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>Archives for the in-process worker-core tests: the test-controlled handler in several configurations, and
/// image_segmenter on the tiny ONNX model.</summary>
public sealed class GateStoreFixture : IDisposable
{
    private readonly TempDir _root = new();

    public GateStoreFixture()
    {
        Store = _root.Sub("model-store");
        Archive("gate", GateHandler.Name, "minWorkers: 1\n");
        Archive("batch4", GateHandler.Name, "minWorkers: 2\nbatchSize: 4\nmaxBatchDelay: 3000\n");
        Archive("timeout", GateHandler.Name, "minWorkers: 1\nresponseTimeout: 2\n");
        Archive("flaky", GateHandler.Name, "minWorkers: 1\nhandler:\n  fail_init_times: 2\n");
        Archive("broken", GateHandler.Name, "minWorkers: 1\nhandler:\n  fail_init_times: 1000\n");
        Archive("overlap", OverlapHandler.Name, "minWorkers: 1\nmaxWorkers: 1\n");
        Archive("seg", "image_segmenter", "minWorkers: 1\nbatchSize: 4\nmaxBatchDelay: 3000\nhandler:\n  mode: original\n  output: summary\n", TestModels.Tiny);
    }

    public string Store { get; }

    private void Archive(string name, string handler, string config, string? serialized = null) =>
        TestArchives.Write(_root, Store, name, handler, config, serialized);

    public void Dispose() => _root.Dispose();
}

[CollectionDefinition("worker-core")]
public sealed class WorkerCoreCollection : ICollectionFixture<GateStoreFixture>;
