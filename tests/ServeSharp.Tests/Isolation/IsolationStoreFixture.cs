using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Isolation;

/// <summary>
/// Archives for the worker-isolation tests: the misbehaving custom handler as a process worker (its default) and,
/// for comparison, in-process; and image_segmenter on the tiny model both ways.
/// </summary>
public sealed class IsolationStoreFixture : IDisposable
{
    private readonly TempDir _root = new();

    public IsolationStoreFixture()
    {
        Store = _root.Sub("model-store");
        var handler = _root.File("fault_handler.cs");
        File.WriteAllText(handler, FaultHandlerSource.Code);
        Archive("fault", handler, "minWorkers: 1\nresponseTimeout: 3\n");
        Archive("fault_inproc", handler, "minWorkers: 1\nworkerIsolation: in-process\n");
        Archive("leak", handler, "minWorkers: 1\nmaxWorkerMemoryMB: 500\n");
        Archive("badinit", handler, "minWorkers: 1\nhandler:\n  fail_init: true\n");
        const string seg = "minWorkers: 1\nhandler:\n  mode: original\n";
        Archive("seg_proc", "image_segmenter", seg + "workerIsolation: process\n", TestModels.Tiny);
        Archive("seg_inproc", "image_segmenter", seg, TestModels.Tiny);
    }

    public string Store { get; }

    private void Archive(string name, string handler, string config, string? serialized = null) =>
        TestArchives.Write(_root, Store, name, handler, config, serialized);

    public void Dispose() => _root.Dispose();
}

[CollectionDefinition("isolation")]
public sealed class IsolationCollection : ICollectionFixture<IsolationStoreFixture>;
