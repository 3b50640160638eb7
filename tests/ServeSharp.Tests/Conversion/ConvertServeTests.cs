using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using ServeSharp.Tests.Support;
using Xunit.Abstractions;

namespace ServeSharp.Tests.Conversion;

/// <summary>
/// The three kinds of TorchServe archive end to end: converted (by the command, or by registration), served by the
/// in-process server, and answering /predictions like TorchServe's image_segmenter steps in torch on real photographs.
/// </summary>
[Collection("parity")]
public sealed partial class ConvertServeTests(TorchServeArchives archives, ITestOutputHelper log) : IClassFixture<TorchServeArchives>
{
    [Fact]
    public async Task An_eager_archive_is_refused_with_the_command_that_converts_it_and_once_converted_serves_like_torchserve()
    {
        using var dir = new TempDir();
        var store = dir.Sub("model-store");
        File.Copy(archives.Archive("eager"), Path.Combine(store, "eager.mar"));
        await using var server = await InProcessServer.StartAsync(store);
        using var management = server.Management;

        using var refused = await management.PostAsync("/models?url=eager.mar&initial_workers=1&synchronous=true", null);
        var message = JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("message").GetString()!;
        log.WriteLine(message);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        var command = Command().Match(message);
        Assert.True(command.Success, $"no `servesharp convert ...` command in: {message}");

        // The command as the message gives it, run as a user would.
        var (code, output) = TorchServeArchives.Convert(null, [.. command.Groups["args"].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)]);
        log.WriteLine(output);
        Assert.True(code == 0, output);
        var register = Register().Match(message).Groups["url"].Value;
        Assert.Equal("onnx/eager.mar", register);

        var converted = Path.Combine(store, register);
        using (var archive = TorchServeArchives.Open(converted, dir))
        {
            Assert.Equal(("eager", "1.0", "image_segmenter", "model.onnx"), (archive.ModelName, archive.ModelVersion, archive.Model.Handler, archive.Model.SerializedFile));
            Assert.Null(archive.Model.ModelFile);
            Assert.Equal("model-config.yaml", archive.Model.ConfigFile);
            Assert.Equal(1, archive.Config.MinWorkers);
            Assert.True(File.Exists(archive.PathOf("index_to_name.json")));
            Assert.False(File.Exists(archive.PathOf("model.py")) || File.Exists(archive.PathOf("model.pth")));
        }
        var report = TorchServeArchives.Report(converted);
        Assert.Equal(TorchServeArchives.Sha(archives.Archive("eager")), report.GetProperty("source").GetProperty("sha256").GetString());
        Assert.Equal("eager", report.GetProperty("source").GetProperty("kind").GetString());
        Assert.Equal("DeepLabV3Segmenter", report.GetProperty("source").GetProperty("modelClass").GetString());
        Assert.Equal(17, report.GetProperty("onnx").GetProperty("opset").GetInt32());
        Assert.Contains("'out' of {out, aux}", report.GetProperty("onnx").GetProperty("exportedFrom").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("1.", report.GetProperty("torch").GetProperty("torch").GetString(), StringComparison.Ordinal);
        Assert.True(report.GetProperty("parity").GetProperty("passed").GetBoolean());
        Assert.True(report.GetProperty("parity").GetProperty("pixelAgreement").GetDouble() >= 0.995);

        using var registered = await management.PostAsync($"/models?url={register}&initial_workers=1&synchronous=true", null);
        Assert.True(registered.IsSuccessStatusCode, await registered.Content.ReadAsStringAsync());
        await archives.AssertServesLikeTorchServeAsync(server, "eager", log);
    }

    [Fact]
    public async Task A_torchscript_archive_converts_with_float16_weights_and_photo_samples_and_serves_like_torchserve()
    {
        using var dir = new TempDir();
        var store = dir.Sub("model-store");
        var (code, output) = TorchServeArchives.Convert(null, archives.Archive("scripted"), "--export-path", store, "--fp16", "--samples", archives.Photos);
        log.WriteLine(output);
        Assert.True(code == 0, output);

        var converted = Path.Combine(store, "scripted.mar");
        var report = TorchServeArchives.Report(converted);
        Assert.Equal("torchscript", report.GetProperty("source").GetProperty("kind").GetString());
        Assert.True(report.GetProperty("onnx").GetProperty("fp16").GetBoolean());
        var samples = report.GetProperty("parity").GetProperty("samples").EnumerateArray().Select(s => s.GetProperty("name").GetString()).ToList();
        Assert.Contains("astronaut.png", samples);
        Assert.Contains(samples, s => s!.Contains("dynamic axes", StringComparison.Ordinal));
        using (var zip = System.IO.Compression.ZipFile.OpenRead(converted))
        using (var source = System.IO.Compression.ZipFile.OpenRead(archives.Archive("scripted")))
        {
            // float16 weights: the ONNX model is about half the TorchScript one.
            Assert.True(zip.GetEntry("model.onnx")!.Length < 0.6 * source.GetEntry("model.pt")!.Length);
        }

        await using var server = await InProcessServer.StartAsync(store);
        using var management = server.Management;
        using var registered = await management.PostAsync("/models?url=scripted.mar&initial_workers=1&synchronous=true", null);
        Assert.True(registered.IsSuccessStatusCode, await registered.Content.ReadAsStringAsync());
        await archives.AssertServesLikeTorchServeAsync(server, "scripted", log);
    }

    [Fact]
    public async Task A_custom_handler_archive_is_converted_once_at_registration_and_its_csharp_skeleton_serves_like_torchserve()
    {
        using var dir = new TempDir();
        var store = dir.Sub("model-store");
        File.Copy(archives.Archive("custom"), Path.Combine(store, "custom.mar"));
        await using var server = await InProcessServer.StartAsync(store, properties: "convert_torchserve_archives=true");
        using var management = server.Management;

        using (var registered = await management.PostAsync("/models?url=custom.mar&initial_workers=1&synchronous=true", null))
            Assert.True(registered.IsSuccessStatusCode, await registered.Content.ReadAsStringAsync());
        await archives.AssertServesLikeTorchServeAsync(server, "custom", log);

        var cached = Assert.Single(Directory.GetDirectories(Path.Combine(store, ".servesharp-converted")));
        Assert.StartsWith(Path.GetFileName(cached), TorchServeArchives.Sha(archives.Archive("custom")), StringComparison.Ordinal);
        var converted = Path.Combine(cached, "custom.mar");
        using (var archive = TorchServeArchives.Open(converted, dir))
        {
            Assert.Equal("handler.cs", archive.Model.Handler);
            Assert.True(File.Exists(archive.PathOf("handler.py")), "the Python handler stays in the archive for reference");
            var skeleton = await File.ReadAllTextAsync(archive.PathOf("handler.cs"));
            log.WriteLine(skeleton);
            Assert.Contains("public sealed class StreetSegmenter : BaseHandler<InferenceRequest, HandlerOutput>", skeleton, StringComparison.Ordinal);
            Assert.Contains("//   hooks it defines: initialize (line 11), postprocess (line 15)", skeleton, StringComparison.Ordinal);
            Assert.Contains("//   imports: logging, torch, ts.torch_handler.image_segmenter.ImageSegmenter", skeleton, StringComparison.Ordinal);
            Assert.Contains("//     def postprocess(self, data):", skeleton, StringComparison.Ordinal);
            Assert.Contains("//         classes = torch.unique(data[\"out\"].argmax(dim=1)).tolist()", skeleton, StringComparison.Ordinal);
        }
        Assert.Equal("handler.cs", TorchServeArchives.Report(converted).GetProperty("handler").GetProperty("to").GetString());

        // Registered again: loaded from the cache, not converted again.
        var written = File.GetLastWriteTimeUtc(converted);
        using (var unregistered = await management.DeleteAsync("/models/custom"))
            Assert.True(unregistered.IsSuccessStatusCode, await unregistered.Content.ReadAsStringAsync());
        using (var again = await management.PostAsync("/models?url=custom.mar&initial_workers=1&synchronous=true", null))
            Assert.True(again.IsSuccessStatusCode, await again.Content.ReadAsStringAsync());
        Assert.Equal(written, File.GetLastWriteTimeUtc(converted));
        Assert.Single(Directory.GetDirectories(Path.Combine(store, ".servesharp-converted")));
    }

    [GeneratedRegex("`servesharp convert (?<args>[^`]+)`")]
    private static partial Regex Command();

    [GeneratedRegex(@"and register (?<url>\S+),")]
    private static partial Regex Register();
}
