using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Protocols;

/// <summary>
/// Archives for the protocol tests: image_segmenter on the tiny ONNX model (no resize, so pixels, tensors and encoded
/// images meet the model at the same size), and the test-controlled gate handler as a handler that knows no tensors.
/// </summary>
public sealed class ProtocolStoreFixture : IDisposable
{
    private readonly TempDir _root = new();

    public ProtocolStoreFixture()
    {
        Store = _root.Sub("model-store");
        TestArchives.Write(_root, Store, "seg", "image_segmenter", "minWorkers: 1\nbatchSize: 4\nmaxBatchDelay: 20\nhandler:\n  mode: original\n  output: summary\n", TestModels.Tiny);
        TestArchives.Write(_root, Store, "gate", GateHandler.Name, "minWorkers: 1\n");
    }

    public string Store { get; }

    public string NewWorkDir() => _root.Sub("server-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose() => _root.Dispose();
}

[CollectionDefinition("protocols")]
public sealed class ProtocolCollection : ICollectionFixture<ProtocolStoreFixture>;
