namespace ServeSharp.Tests.Support;

/// <summary>
/// ONNX models made by tools/ for the tests, once per test run, in a folder of their own
/// (generated fixtures are never committed).
/// </summary>
internal static class TestModels
{
    private static readonly string ModelsFolder = Directory.CreateDirectory(
        Path.Combine(Path.GetTempPath(), "servesharp-tests", "models-" + Environment.ProcessId)).FullName;

    private static readonly Lazy<string> TinyModel = new(() => Make("tiny.onnx"));
    private static readonly Lazy<string> TinyArgmaxModel = new(() => Make("tiny-argmax.onnx", "--argmax"));
    private static readonly Lazy<string> FlatModel = new(() => Make("flat.onnx", "--flat"));

    /// <summary>1x1 conv, 3 → 4 classes: out = [x0, x1, x2, -(x0+x1+x2)] per pixel. Input "input", output "out".</summary>
    public static string Tiny => TinyModel.Value;

    /// <summary>The same, ending in ArgMax (int64 N×H×W).</summary>
    public static string TinyArgmax => TinyArgmaxModel.Value;

    /// <summary>A model image_segmenter must refuse: input N×3, output N×C.</summary>
    public static string Flat => FlatModel.Value;

    public static string Folder => ModelsFolder;

    private static string Make(string name, params string[] extra)
    {
        var path = Path.Combine(ModelsFolder, name);
        Repo.RunPython("models/tiny_onnx.py", [path, .. extra]);
        return path;
    }
}
