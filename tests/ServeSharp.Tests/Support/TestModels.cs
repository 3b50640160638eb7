namespace ServeSharp.Tests.Support;

/// <summary>Tiny ONNX models made by tools/models/tiny_onnx.py, cached by <see cref="FixtureCache"/>.</summary>
internal static class TestModels
{
    /// <summary>1x1 conv, 3 → 4 classes: out = [x0, x1, x2, -(x0+x1+x2)] per pixel. Input "input", output "out".</summary>
    public static string Tiny => Make("tiny.onnx");

    /// <summary>The same, ending in ArgMax (int64 N×H×W).</summary>
    public static string TinyArgmax => Make("tiny-argmax.onnx", "--argmax");

    /// <summary>A model image_segmenter must refuse: input N×3, output N×C.</summary>
    public static string Flat => Make("flat.onnx", "--flat");

    private static string Make(string name, params string[] extra)
    {
        var folder = FixtureCache.Folder(Path.GetFileNameWithoutExtension(name), ["models/tiny_onnx.py"], extra,
            dir => Repo.RunPython("models/tiny_onnx.py", [Path.Combine(dir, name), .. extra]));
        return Path.Combine(folder, name);
    }
}
