using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>
/// Archives for the management-API fidelity tests: archives without a model-config.yaml (TorchServe's defaults
/// apply), two versions of one model, the test-controlled handler batching, a .cs handler with the describe hook, and
/// one with TorchServe's describe-only keys set.
/// </summary>
public sealed class ManagementStoreFixture : IDisposable
{
    private readonly TempDir _root = new();

    public ManagementStoreFixture()
    {
        Store = _root.Sub("model-store");
        TestArchives.Write(_root, Store, "tiny", "image_segmenter", "", TestModels.Tiny);
        TestArchives.Write(_root, Store, "multi", GateHandler.Name, "", version: "1.0", fileName: "multi-v1");
        TestArchives.Write(_root, Store, "multi", GateHandler.Name, "", version: "2.0", fileName: "multi-v2");
        TestArchives.Write(_root, Store, "gate", GateHandler.Name, "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 4\nmaxBatchDelay: 5000\n");
        // A BaseHandler with no Describe hook (image_segmenter has one).
        TestArchives.Write(_root, Store, "linear", Path.Combine(Repo.Root, "tests", "fixtures", "handlers", "linear_handler.cs"), "", TestModels.Tiny);
        TestArchives.Write(_root, Store, "described", Path.Combine(Repo.Root, "tests", "fixtures", "handlers", "describe_handler.cs"), "minWorkers: 1\nmaxWorkers: 1\n");
        TestArchives.Write(_root, Store, "keys", GateHandler.Name, """
            clientTimeoutInMills: 500
            useJobTicket: true
            parallelType: pp
            parallelLevel: 2
            jobQueueSize: 7
            maxRetryTimeoutInSec: 60
            startupTimeout: 30
            deviceType: cpu
            continuousBatching: true
            """);
    }

    public string Store { get; }

    /// <summary>The bytes of an archive in the store (to serve it over HTTP).</summary>
    public byte[] Bytes(string file) => File.ReadAllBytes(Path.Combine(Store, file));

    public void Dispose() => _root.Dispose();
}

[CollectionDefinition("management")]
public sealed class ManagementCollection : ICollectionFixture<ManagementStoreFixture>;
