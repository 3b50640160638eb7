using System.Text.Json;
using ServeSharp.Archive;
using ServeSharp.Sdk;
using ServeSharp.Tests.Segmentation;
using ServeSharp.Tests.Support;
using Xunit.Abstractions;

namespace ServeSharp.Tests.Conversion;

/// <summary>
/// TorchServe archives as torch-model-archiver writes them (tools/convert/torchserve_archives.py), made from the fitted
/// torchvision DeepLabV3-MobileNetV3 the parity tests use (a random DeepLab is too chaotic for parity to mean anything),
/// cached across runs by the generators' content; the torch reference of TorchServe's image_segmenter steps on real
/// photographs for the same weights; and ways to run <c>servesharp convert</c> as a real process.
/// </summary>
public sealed class TorchServeArchives
{
    private readonly ParityModels _models = new();
    private readonly Lazy<string> _folder;
    private readonly Lazy<Dictionary<string, (byte[] Classes, float[] Probs, int Width, int Height)>> _reference;

    public TorchServeArchives()
    {
        _folder = new(() =>
        {
            var state = _models.DeepLabV3MobileNet.State;
            return FixtureCache.Folder("torchserve-archives", ["convert/torchserve_archives.py"], [Sha(state)],
                dir => Repo.RunPython("convert/torchserve_archives.py", "--state", state, "--out", dir));
        });
        _reference = new(() => _models.Reference(_models.DeepLabV3MobileNet.State, ParityModels.PngPhotos, "--mode", "torchserve"));
    }

    /// <summary>An archive of the set: eager, scripted, custom, two-classes, misfit, not-an-archive, branchy.</summary>
    public string Archive(string name) => Path.Combine(_folder.Value, name + ".mar");

    public string Photos => _models.Photos;

    /// <summary>python3 that cannot import torch: Debian's Python without its site packages.</summary>
    internal static string PythonWithoutTorch(TempDir dir)
    {
        var bin = dir.Sub("no-torch-bin");
        var path = Path.Combine(bin, "python3");
        File.WriteAllText(path, $"#!/bin/sh\nexec {Repo.Python} -S \"$@\"\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    /// <summary>Runs <c>servesharp convert</c> (the test build's servesharp.dll) as its own process.</summary>
    public static (int ExitCode, string Output) Convert(IReadOnlyDictionary<string, string>? environment, params string[] args) =>
        Repo.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "servesharp.dll"), "convert", .. args], environment: environment);

    /// <summary>Reads MAR-INF/conversion.json of a converted archive.</summary>
    public static JsonElement Report(string mar)
    {
        using var zip = System.IO.Compression.ZipFile.OpenRead(mar);
        using var stream = zip.GetEntry("MAR-INF/conversion.json")!.Open();
        return JsonDocument.Parse(stream).RootElement.Clone();
    }

    /// <summary>
    /// Posts each photograph to <paramref name="model"/> (TorchServe's JSON answer) and compares it with TorchServe's
    /// image_segmenter steps in torch: class agreement ≥ 99.5 % per photo, and more than one class across them.
    /// </summary>
    internal async Task AssertServesLikeTorchServeAsync(InProcessServer server, string model, ITestOutputHelper log)
    {
        using var inference = server.Inference;
        var reference = _reference.Value;
        var classesSeen = new HashSet<byte>();
        foreach (var photo in ParityModels.PngPhotos)
        {
            using var response = await inference.PostAsync($"/predictions/{model}", new ByteArrayContent(await File.ReadAllBytesAsync(_models.Photo(photo))));
            var body = await response.Content.ReadAsByteArrayAsync();
            Assert.True(response.IsSuccessStatusCode, $"{photo}: {(int)response.StatusCode} {System.Text.Encoding.UTF8.GetString(body)}");
            var ours = SegmenterHarness.ParseTorchServe(HandlerOutput.JsonBytes(body));
            var expected = reference[photo];
            Assert.Equal((expected.Width, expected.Height), (ours.Width, ours.Height));
            var same = 0;
            var maxDelta = 0f;
            for (var i = 0; i < expected.Classes.Length; i++)
            {
                if (expected.Classes[i] == ours.Classes[i]) same++;
                maxDelta = Math.Max(maxDelta, Math.Abs(expected.Probs[i] - ours.Probs[i]));
                classesSeen.Add(expected.Classes[i]);
            }
            var agreement = (double)same / expected.Classes.Length;
            log.WriteLine($"{model} {photo}: pixel agreement with TorchServe's steps in torch {agreement:P3}, max |Δprob| {maxDelta:E1}");
            Assert.True(agreement >= 0.995, $"{model} {photo}: pixel agreement {agreement:P3} < 99.5 %");
        }
        Assert.True(classesSeen.Count >= 2, "the reference predicts one class everywhere: the comparison would be vacuous");
    }

    /// <summary>The converted archive, opened: its manifest and files.</summary>
    internal static ModelArchive Open(string mar, TempDir dir) => ModelArchive.Open(mar, dir.Sub("open-" + Guid.NewGuid().ToString("N")[..8]));

    public static string Sha(string file)
    {
        using var stream = File.OpenRead(file);
        return System.Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream));
    }
}
