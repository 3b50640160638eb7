using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using ServeSharp.Tests.Support;
using SkiaSharp;

namespace ServeSharp.Tests.Demo;

/// <summary>
/// The README's promises about the demo model, checked against the real server serving model-store/deeplab.mar:
/// the colour mask of the example matches its ground truth, and the eval command reproduces the README's mIoU.
/// </summary>
[Collection("server")]
public sealed class DemoTests
{
    private static readonly string ModelStore = Path.Combine(Repo.Root, "model-store");

    [Fact]
    public async Task The_readme_curl_for_the_colour_mask_matches_the_examples_ground_truth()
    {
        using var tmp = new TempDir();
        await using var server = ServerProcess.Start(tmp.Path, ModelStore, ["--models", "deeplab=deeplab.mar", "--ncs"]);
        await server.WaitHealthyAsync();

        var example = Path.Combine(Repo.Root, "examples", "scene_0.png");
        var colourFile = tmp.File("color.png");
        var (status, _) = ServerProcess.Curl("-H", $"Authorization: Bearer {server.InferenceKey}", $"{server.InferenceUrl}/predictions/deeplab", "-T", example, "-o", colourFile);
        Assert.Equal(200, status);

        var palette = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(Repo.Root, "tools", "demo", "palette.json"))).RootElement
            .EnumerateArray().Select(c => (c[0].GetInt32(), c[1].GetInt32(), c[2].GetInt32())).ToList();
        using var colour = SKBitmap.Decode(colourFile);
        using var truth = SKBitmap.Decode(Path.Combine(Repo.Root, "examples", "scene_0_label.png"));
        Assert.Equal((truth.Width, truth.Height), (colour.Width, colour.Height));
        var same = 0;
        for (var y = 0; y < truth.Height; y++)
        {
            for (var x = 0; x < truth.Width; x++)
            {
                var px = colour.GetPixel(x, y);
                if (palette.IndexOf((px.Red, px.Green, px.Blue)) == truth.GetPixel(x, y).Red) same++;
            }
        }
        var agreement = (double)same / (truth.Width * truth.Height);
        Assert.True(agreement >= 0.90, $"the colour mask matches the ground truth on {agreement:P2} of pixels");
    }

    [Fact]
    public async Task The_eval_command_reproduces_the_readmes_miou()
    {
        var readme = await File.ReadAllTextAsync(Path.Combine(Repo.Root, "README.md"));
        var claimed = Regex.Match(readme, @"reaches mIoU (0\.\d{4}) and pixel accuracy (0\.\d{4})");
        Assert.True(claimed.Success, "the README states no mIoU figure");

        using var tmp = new TempDir();
        var data = tmp.Sub("heldout");
        Repo.RunPython("demo/scenes.py", data, "--count", "200", "--seed", "999000");
        await using var server = ServerProcess.Start(tmp.Sub("server"), ModelStore, ["--models", "deeplab=deeplab.mar", "--ncs"]);
        await server.WaitHealthyAsync();
        var output = Repo.RunPython("demo/evaluate.py", data, "--url", server.InferenceUrl, "--token", server.InferenceKey!, "--json");
        var result = JsonDocument.Parse(output.Trim().Split('\n')[^1]).RootElement;
        var miou = result.GetProperty("mIoU").GetDouble();
        Assert.Equal(200, result.GetProperty("images").GetInt32());
        Assert.True(miou >= 0.90, $"mIoU {miou:F4} < 0.90");
        Assert.Equal(claimed.Groups[1].Value, miou.ToString("F4", CultureInfo.InvariantCulture));
        Assert.Equal(claimed.Groups[2].Value, result.GetProperty("pixel_accuracy").GetDouble().ToString("F4", CultureInfo.InvariantCulture));
    }
}
