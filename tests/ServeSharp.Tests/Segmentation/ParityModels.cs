using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Segmentation;

/// <summary>
/// DeepLab models for parity: exported by tools/ after a short seeded fit (a random DeepLab is too chaotic for parity
/// to mean anything), their torch weights kept for the reference script; and real photographs as PNG and JPEG.
/// Made once per test run.
/// </summary>
public sealed class ParityModels
{
    private static readonly string Folder = Directory.CreateDirectory(Path.Combine(TestModels.Folder, "parity")).FullName;
    private readonly Lazy<(string Onnx, string State)> _plus = new(() => Make("deeplabv3plus_mobilenet_v3_large"));
    private readonly Lazy<(string Onnx, string State)> _mobilenet = new(() => Make("deeplabv3_mobilenet_v3_large"));
    private readonly Lazy<string> _photos = new(() =>
    {
        var dir = Path.Combine(Folder, "photos");
        Repo.RunPython("parity/photographs.py", dir);
        return dir;
    });

    public (string Onnx, string State) DeepLabV3Plus => _plus.Value;
    public (string Onnx, string State) DeepLabV3MobileNet => _mobilenet.Value;
    public string Photos => _photos.Value;

    public string Photo(string name) => Path.Combine(Photos, name);

    public static readonly string[] PngPhotos = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png"];

    private static (string, string) Make(string arch)
    {
        var onnx = Path.Combine(Folder, arch + ".onnx");
        var state = Path.Combine(Folder, arch + ".pt");
        Repo.RunPython("models/export_segmentation.py", "--arch", arch, "--num-classes", "6", "--fit-steps", "150", "--seed", "0", "--out", onnx, "--save-state", state);
        return (onnx, state);
    }

    /// <summary>Runs tools/parity/reference.py and reads back (classes, probs, width, height) per image stem.</summary>
    public Dictionary<string, (byte[] Classes, float[] Probs, int Width, int Height)> Reference(string state, string[] images, params string[] options)
    {
        var outDir = Path.Combine(Folder, "ref-" + Guid.NewGuid().ToString("N")[..8]);
        Repo.RunPython("parity/reference.py", ["--state", state, "--out", outDir, .. options, .. images.Select(Photo)]);
        var result = new Dictionary<string, (byte[], float[], int, int)>();
        foreach (var image in images)
        {
            var stem = Path.Combine(outDir, Path.GetFileNameWithoutExtension(image));
            using var meta = System.Text.Json.JsonDocument.Parse(File.ReadAllText(stem + ".json"));
            var probBytes = File.ReadAllBytes(stem + ".probs");
            var probs = new float[probBytes.Length / 4];
            Buffer.BlockCopy(probBytes, 0, probs, 0, probBytes.Length);
            result[image] = (File.ReadAllBytes(stem + ".classes"), probs, meta.RootElement.GetProperty("width").GetInt32(), meta.RootElement.GetProperty("height").GetInt32());
        }
        return result;
    }
}
