using System.Globalization;
using System.Text;
using ServeSharp.Handlers.Segmentation;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Segmentation;

/// <summary>The fast paths of the output: Python's float spelling, and the plane-wise argmax/softmax.</summary>
[Collection("parity")]
public sealed class OutputFormatTests(ParityModels models)
{
    [Theory]
    [InlineData(1f, "1.0")]
    [InlineData(0.5f, "0.5")]
    [InlineData(0.25f, "0.25")]
    [InlineData(0.1f, "0.10000000149011612")]
    [InlineData(0.7f, "0.699999988079071")]
    [InlineData(1f / 255, "0.003921568859368563")]
    [InlineData(0.01f, "0.009999999776482582")]
    [InlineData(2.5f, "2.5")]
    [InlineData(1e-5f, "9.999999747378752e-06")]
    [InlineData(0f, "0.0")]
    [InlineData(3f, "3.0")]
    public void Floats_are_spelled_as_pythons_repr_of_the_widened_double(float value, string python) =>
        Assert.Equal(python, Format(value));

    [Fact]
    public void The_fast_path_agrees_with_shortest_round_trip_formatting_across_its_whole_range()
    {
        // Every 101st float in [2^-8, 1] (the fast path's domain; the whole range was checked once, 67M values).
        uint first = BitConverter.SingleToUInt32Bits(1f / 256), last = BitConverter.SingleToUInt32Bits(1f);
        var differ = new List<string>();
        for (var bits = first; bits <= last && differ.Count < 5; bits += 101)
        {
            var value = BitConverter.UInt32BitsToSingle(bits);
            var expected = ((double)value).ToString("R", CultureInfo.InvariantCulture);
            if (!expected.Contains('.')) expected += ".0";
            var actual = Format(value);
            if (actual != expected) differ.Add($"{value:R}: {actual} instead of {expected}");
            if (double.Parse(actual, CultureInfo.InvariantCulture) != value) differ.Add($"{value:R}: {actual} does not read back");
        }
        Assert.Empty(differ);
    }

    [Fact]
    public async Task TorchServe_json_is_byte_for_byte_what_pythons_json_dumps_writes_for_the_same_numbers()
    {
        using var segmenter = new SegmenterHarness(models.DeepLabV3Plus.Onnx);
        using var dir = new TempDir();
        var ours = dir.File("ours.json");
        File.WriteAllBytes(ours, (await segmenter.RunAsync(File.ReadAllBytes(models.Photo("astronaut.png")))).Body.ToArray());
        // json.loads reads each number as the double it denotes; json.dumps writes it back with repr.
        var (code, output) = Repo.Run(Repo.Python, ["-c", "import json,sys; t=open(sys.argv[1]).read(); print(json.dumps(json.loads(t)) == t)", ours]);
        Assert.True(code == 0, output);
        Assert.Equal("True", output.Trim());
    }

    [Fact]
    public void Plane_wise_argmax_and_softmax_match_a_per_pixel_reference_ties_included()
    {
        const int classes = 21, pixels = 1000 + 7; // not a multiple of the vector width
        var random = new Random(5);
        var planes = new float[classes * pixels];
        for (var i = 0; i < planes.Length; i++) planes[i] = (float)Math.Round(random.NextDouble() * 8 - 4, 1); // rounding makes ties
        var best = new byte[pixels];
        var probs = new float[pixels];
        Argmax.Planes(planes, classes, pixels, probabilities: false, best, probs);
        for (var i = 0; i < pixels; i++)
        {
            var (k, max) = (0, planes[i]);
            for (var c = 1; c < classes; c++)
            {
                if (planes[c * pixels + i] > max) (k, max) = (c, planes[c * pixels + i]);
            }
            var sum = 0.0;
            for (var c = 0; c < classes; c++) sum += Math.Exp(planes[c * pixels + i] - max);
            Assert.Equal(k, best[i]);
            Assert.Equal(1 / sum, probs[i], 1e-6);
        }
    }

    private static string Format(float value)
    {
        var buffer = new byte[40];
        return Encoding.ASCII.GetString(buffer, 0, PythonFloat.Format(value, buffer));
    }
}
