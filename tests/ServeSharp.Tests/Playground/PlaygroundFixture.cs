using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Playground;

/// <summary>
/// One Chromium for the playground tests, and their model store: image_segmenter on the tiny ONNX model (no resize,
/// so a photograph is answered at its own size quickly) with class names, and the test-controlled gate handler.
/// </summary>
public sealed class PlaygroundFixture : IAsyncLifetime, IDisposable
{
    private readonly TempDir _root = new();
    private Chromium? _chromium;

    /// <summary>The names the page's legend must show: index_to_name.json in the seg archive.</summary>
    public static readonly string[] ClassNames = ["reddish", "greenish", "bluish", "dark"];

    public PlaygroundFixture()
    {
        Store = _root.Sub("model-store");
        var names = _root.File("index_to_name.json");
        File.WriteAllText(names, "{" + string.Join(", ", ClassNames.Select((n, i) => $"\"{i}\": \"{n}\"")) + "}");
        TestArchives.Write(_root, Store, "seg", "image_segmenter", "minWorkers: 1\nhandler:\n  mode: original\n", TestModels.Tiny, extraFiles: [names]);
        TestArchives.Write(_root, Store, "gate", GateHandler.Name, "minWorkers: 1\n");
    }

    public string Store { get; }

    internal Chromium Browser => _chromium ?? throw new InvalidOperationException("the browser did not start");

    /// <summary>scikit-image's photographs as PNG (the same cache entry as the parity tests' photographs).</summary>
    public static string Photo(string name) =>
        Path.Combine(FixtureCache.Folder("photos", ["parity/photographs.py"], [], dir => Repo.RunPython("parity/photographs.py", dir)), name);

    public string NewDir() => _root.Sub("t-" + Guid.NewGuid().ToString("N")[..8]);

    public async Task InitializeAsync() => _chromium = await Chromium.StartAsync();

    public async Task DisposeAsync()
    {
        if (_chromium is not null) await _chromium.DisposeAsync();
    }

    public void Dispose() => _root.Dispose();
}

[CollectionDefinition("playground")]
public sealed class PlaygroundCollection : ICollectionFixture<PlaygroundFixture>;
