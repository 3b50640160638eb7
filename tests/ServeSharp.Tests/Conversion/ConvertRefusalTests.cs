using ServeSharp.Tests.Support;
using Xunit.Abstractions;

namespace ServeSharp.Tests.Conversion;

/// <summary>
/// What <c>servesharp convert</c> refuses, as a real process: each refusal is a clear message on stderr, a non-zero
/// exit code, and nothing written (the export folder is not even created).
/// </summary>
[Collection("parity")]
public sealed class ConvertRefusalTests(TorchServeArchives archives, ITestOutputHelper log) : IClassFixture<TorchServeArchives>
{
    [Theory]
    [InlineData("not-an-archive", "not-an-archive.mar: missing MAR-INF/MANIFEST.json (not a model archive)")]
    [InlineData("two-classes", "model.py defines 2 nn.Module classes (DeepLabV3Segmenter, Unused); TorchServe's eager loading needs exactly one")]
    [InlineData("misfit", "model.pth does not fit DeepLabV3Segmenter from model.py: Error(s) in loading state_dict for DeepLabV3Segmenter: size mismatch for classifier.4.weight")]
    public void A_broken_archive_is_refused_with_its_reason_and_nothing_is_written(string archive, string reason)
    {
        using var dir = new TempDir();
        var export = Path.Combine(dir.Path, "out");
        var (code, output) = Refused(null, archives.Archive(archive), "--export-path", export);
        Assert.Equal(1, code);
        Assert.Contains($"servesharp convert: {reason}", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(export));
    }

    [Fact]
    public void A_python_without_torch_is_named_with_what_it_lacks()
    {
        using var dir = new TempDir();
        var python = TorchServeArchives.PythonWithoutTorch(dir);
        var export = Path.Combine(dir.Path, "out");
        var (code, output) = Refused(null, archives.Archive("eager"), "--export-path", export, "--python", python);
        Assert.Equal(1, code);
        Assert.Contains($"servesharp convert: --python {python}: cannot import torch (ModuleNotFoundError: No module named 'torch')", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(export));

        // Without --python, every python3/python on PATH is tried; none has torch here.
        var path = Path.GetDirectoryName(python)!;
        (code, output) = Refused(new Dictionary<string, string> { ["PATH"] = path }, archives.Archive("eager"), "--export-path", export);
        Assert.Equal(1, code);
        Assert.Contains($"servesharp convert: no Python on PATH can import torch (tried {python}: cannot import torch", output, StringComparison.Ordinal);
        Assert.Contains("--python PATH", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(export));
    }

    [Fact]
    public void An_export_that_parity_catches_is_not_written_unless_forced_and_then_the_report_says_so()
    {
        // branchy.mar's forward branches in Python on the input's width: tracing bakes in the 224-wide branch, which the
        // generated input at another size exposes (torch negates the logits there, the exported model does not).
        using var dir = new TempDir();
        var export = Path.Combine(dir.Path, "out");
        var (code, output) = Refused(null, archives.Archive("branchy"), "--export-path", export);
        Assert.Equal(1, code);
        Assert.Contains("servesharp convert: parity gate: pixel agreement", output, StringComparison.Ordinal);
        Assert.Contains("BELOW the 99.5 % gate", output, StringComparison.Ordinal);
        Assert.Contains("generated at 280x168 (dynamic axes): agreement 0.000 %", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(export));

        // --force writes it, with the figures; the first python3 on PATH has no torch, so the next one is used.
        var noTorch = TorchServeArchives.PythonWithoutTorch(dir);
        var path = $"{Path.GetDirectoryName(noTorch)}:{Path.GetDirectoryName(Repo.Python)}:/bin";
        (code, output) = TorchServeArchives.Convert(new Dictionary<string, string> { ["PATH"] = path }, archives.Archive("branchy"), "--export-path", export, "--force");
        log.WriteLine(output);
        Assert.True(code == 0, output);
        Assert.Contains("written anyway (--force)", output, StringComparison.Ordinal);
        var parity = TorchServeArchives.Report(Path.Combine(export, "branchy.mar")).GetProperty("parity");
        Assert.False(parity.GetProperty("passed").GetBoolean());
        Assert.True(parity.GetProperty("forced").GetBoolean());
        Assert.InRange(parity.GetProperty("pixelAgreement").GetDouble(), 0.5, 0.99);
        Assert.Equal(Repo.Python, TorchServeArchives.Report(Path.Combine(export, "branchy.mar")).GetProperty("torch").GetProperty("python").GetString());
    }

    [Fact]
    public async Task A_conversion_that_fails_at_registration_answers_400_with_its_reason_and_caches_nothing()
    {
        using var dir = new TempDir();
        var store = dir.Sub("model-store");
        File.Copy(archives.Archive("two-classes"), Path.Combine(store, "two-classes.mar"));
        await using var server = await InProcessServer.StartAsync(store, properties: "convert_torchserve_archives=true");
        using var management = server.Management;
        using var response = await management.PostAsync("/models?url=two-classes.mar&initial_workers=1&synchronous=true", null);
        var body = await response.Content.ReadAsStringAsync();
        log.WriteLine(body);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("two-classes.mar is a TorchServe archive of a PyTorch model, and converting it to ONNX failed: model.py defines 2 nn.Module classes", body, StringComparison.Ordinal);
        var cache = Path.Combine(store, ".servesharp-converted");
        Assert.True(!Directory.Exists(cache) || Directory.GetFiles(cache, "*", SearchOption.AllDirectories).Length == 0);
    }

    [Fact]
    public void Refusals_before_any_torch_work()
    {
        using var dir = new TempDir();
        var export = dir.Sub("out");
        File.WriteAllText(Path.Combine(export, "eager.mar"), "an archive already there");

        var (code, output) = Refused(null, archives.Archive("eager"), "--export-path", export);
        Assert.Equal(1, code);
        Assert.Contains($"servesharp convert: {Path.Combine(export, "eager.mar")} already exists; use --force to overwrite it", output, StringComparison.Ordinal);
        Assert.Equal("an archive already there", File.ReadAllText(Path.Combine(export, "eager.mar")));

        (code, output) = Refused(null, Path.Combine(Repo.Root, "model-store", "deeplab.mar"), "--export-path", Path.Combine(dir.Path, "new"));
        Assert.Equal(1, code);
        Assert.Contains("deeplab.mar is already an ONNX archive (serializedFile deeplab.onnx): ServeSharp serves it as it is", output, StringComparison.Ordinal);

        (code, output) = Refused(null, archives.Archive("eager"), "--export-path", Path.Combine(dir.Path, "new"), "--dynamic", "false");
        Assert.Equal(1, code);
        Assert.Contains("--dynamic false fixes the model's input at 224x224, and image_segmenter only feeds a fixed-size model in mode fixed", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "new")));
    }

    [Theory]
    [InlineData(new[] { "--input-size", "224x224" }, "Option '--export-path' is required")]
    [InlineData(new[] { "--export-path", "out", "--input-size", "224" }, "--input-size '224' is not HxW")]
    [InlineData(new[] { "--export-path", "out", "--opset", "nine" }, "nine")]
    public void Usage_mistakes_exit_with_2(string[] args, string message)
    {
        var (code, output) = TorchServeArchives.Convert(null, ["eager.mar", .. args]);
        Assert.Equal(2, code);
        Assert.Contains(message, output, StringComparison.Ordinal);
        Assert.Contains("servesharp convert --help", output, StringComparison.Ordinal);
    }

    private (int, string) Refused(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var (code, output) = TorchServeArchives.Convert(environment, args);
        log.WriteLine(output);
        return (code, output);
    }
}
