using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Segmentation;

/// <summary>
/// DeepLab models for parity: exported by tools/ after a short seeded fit (a random DeepLab is too chaotic for parity
/// to mean anything), their torch weights kept for the reference script; and real photographs as PNG and JPEG.
/// Made once and cached by the generators' content (<see cref="FixtureCache"/>); a failed generation is reported to the
/// test that asked and tried again by the next.
/// </summary>
public sealed class ParityModels
{
    private static readonly string[] Exporter = ["models/export_segmentation.py", "models/fit.py", "models/segmentation_models.py"];
    private static readonly string Scratch = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "servesharp-tests", "parity-" + Environment.ProcessId)).FullName;

    public (string Onnx, string State) DeepLabV3Plus => Make("deeplabv3plus_mobilenet_v3_large");
    public (string Onnx, string State) DeepLabV3MobileNet => Make("deeplabv3_mobilenet_v3_large");
    public string Photos => FixtureCache.Folder("photos", ["parity/photographs.py"], [], dir => Repo.RunPython("parity/photographs.py", dir));

    public string Photo(string name) => Path.Combine(Photos, name);

    public static readonly string[] PngPhotos = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png"];

    private static (string, string) Make(string arch)
    {
        string[] args = ["--arch", arch, "--num-classes", "6", "--fit-steps", "150", "--seed", "0"];
        var folder = FixtureCache.Folder(arch, Exporter, args, dir =>
            Repo.RunPython("models/export_segmentation.py", [.. args, "--out", Path.Combine(dir, "model.onnx"), "--save-state", Path.Combine(dir, "model.pt")]));
        return (Path.Combine(folder, "model.onnx"), Path.Combine(folder, "model.pt"));
    }

    /// <summary>Runs tools/parity/reference.py and reads back (classes, probs, width, height) per image stem.</summary>
    public Dictionary<string, (byte[] Classes, float[] Probs, int Width, int Height)> Reference(string state, string[] images, params string[] options)
    {
        var outDir = Path.Combine(Scratch, "ref-" + Guid.NewGuid().ToString("N")[..8]);
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
