using System.Security.Cryptography;

namespace ServeSharp.Tests.Support;

/// <summary>
/// ONNX models made by tools/ for the tests, cached across runs in a folder named after the generator's content
/// hash (a changed generator makes new models; generated fixtures are never committed). A model is written to a
/// temporary name and moved into place when complete, so a failed or interrupted generation leaves nothing behind
/// and is reported to the test that asked — and tried again by the next one, never remembered as a result.
/// </summary>
internal static class TestModels
{
    private static readonly object Gate = new();

    /// <summary>1x1 conv, 3 → 4 classes: out = [x0, x1, x2, -(x0+x1+x2)] per pixel. Input "input", output "out".</summary>
    public static string Tiny => Make("tiny.onnx");

    /// <summary>The same, ending in ArgMax (int64 N×H×W).</summary>
    public static string TinyArgmax => Make("tiny-argmax.onnx", "--argmax");

    /// <summary>A model image_segmenter must refuse: input N×3, output N×C.</summary>
    public static string Flat => Make("flat.onnx", "--flat");

    public static string Folder { get; } = CacheFolder("models/tiny_onnx.py");

    /// <summary>A cache folder for what <paramref name="script"/> (under tools/) generates, keyed by the script's content.</summary>
    public static string CacheFolder(string script)
    {
        var hash = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Repo.Tool(script))))[..16];
        return Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "servesharp-tests", "cache", Path.GetFileNameWithoutExtension(script) + "-" + hash)).FullName;
    }

    private static string Make(string name, params string[] extra)
    {
        var path = Path.Combine(Folder, name);
        lock (Gate)
        {
            if (File.Exists(path)) return path;
            var temp = Path.Combine(Folder, $"{Path.GetFileNameWithoutExtension(name)}.{Environment.ProcessId}.partial.onnx");
            try
            {
                Repo.RunPython("models/tiny_onnx.py", [temp, .. extra]);
                File.Move(temp, path, overwrite: true);
            }
            finally
            {
                File.Delete(temp);
            }
            return path;
        }
    }
}
