using ServeSharp.Archive;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>A model store with the probe handler (two versions, and variants) and the linear ONNX handler.</summary>
public sealed class ModelStoreFixture : IDisposable
{
    private readonly TempDir _root = new();

    public ModelStoreFixture()
    {
        Store = _root.Sub("model-store");
        var probe = Path.Combine(Repo.Root, "tests", "fixtures", "handlers", "probe_handler.cs");
        Archive("probe", "1.0", probe, "minWorkers: 1\nmaxWorkers: 4\n");
        Archive("probe", "2.0", probe, "minWorkers: 1\n", fileName: "probe-v2");
        Archive("batcher", "1.0", probe, "minWorkers: 1\nbatchSize: 4\nmaxBatchDelay: 5000\n");
        Archive("slowload", "1.0", probe, "minWorkers: 1\nhandler:\n  init_sleep_ms: 2500\n");
        Archive("badinit", "1.0", probe, "minWorkers: 1\nhandler:\n  fail_init: true\n");
        ArchiveWriter.Write(new ArchiveSpec
        {
            ModelName = "linear", Handler = Path.Combine(Repo.Root, "tests", "fixtures", "handlers", "linear_handler.cs"),
            SerializedFile = TestModels.Tiny, ExportPath = Store,
        });
    }

    public string Store { get; }

    public string NewWorkDir() => _root.Sub("server-" + Guid.NewGuid().ToString("N")[..8]);

    private void Archive(string name, string version, string handler, string config, string? fileName = null) =>
        TestArchives.Write(_root, Store, name, handler, config, version: version, fileName: fileName);

    public void Dispose() => _root.Dispose();
}

[CollectionDefinition("server")]
public sealed class ServerCollection : ICollectionFixture<ModelStoreFixture>;
