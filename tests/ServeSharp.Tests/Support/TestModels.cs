namespace ServeSharp.Tests.Support;

/// <summary>
/// ONNX models made by tools/ for the tests, once per test run, in a folder of their own
/// (generated fixtures are never committed).
/// </summary>
internal static class TestModels
{
    private static readonly string Folder = Directory.CreateDirectory(
        Path.Combine(Path.GetTempPath(), "servesharp-tests", "models-" + Environment.ProcessId)).FullName;

    private static readonly Lazy<string> TinyModel = new(() => Make("tiny.onnx"));
    private static readonly Lazy<string> TinyArgmaxModel = new(() => Make("tiny-argmax.onnx", "--argmax"));

    /// <summary>1x1 conv, 3 → 4 classes: out = [x0, x1, x2, -(x0+x1+x2)] per pixel. Input "input", output "out".</summary>
    public static string Tiny => TinyModel.Value;

    /// <summary>The same, ending in ArgMax (int64 N×H×W).</summary>
    public static string TinyArgmax => TinyArgmaxModel.Value;

    private static string Make(string name, params string[] extra)
    {
        var path = Path.Combine(Folder, name);
        Repo.RunPython("models/tiny_onnx.py", [path, .. extra]);
        return path;
    }
}
