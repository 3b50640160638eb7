using System.Text.Json;
using System.Text.Json.Serialization;

namespace ServeSharp.Handlers.Segmentation;

internal sealed record RegionSummary(
    [property: JsonPropertyName("area")] int Area,
    [property: JsonPropertyName("bbox")] int[] BoundingBox,
    [property: JsonPropertyName("centroid")] double[] Centroid);

internal sealed record ClassSummary(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("color")] int[] Color,
    [property: JsonPropertyName("pixels")] int Pixels,
    [property: JsonPropertyName("fraction")] double Fraction,
    [property: JsonPropertyName("region_count")] int RegionCount,
    [property: JsonPropertyName("regions")] IReadOnlyList<RegionSummary> Regions,
    [property: JsonPropertyName("rle"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] Rle? Rle);

/// <summary>COCO's uncompressed RLE: column-major run lengths, starting with a run of zeros.</summary>
internal sealed record Rle(
    [property: JsonPropertyName("size")] int[] Size,
    [property: JsonPropertyName("counts")] IReadOnlyList<int> Counts);

internal sealed record SegmentationSummary(
    [property: JsonPropertyName("width")] int Width,
    [property: JsonPropertyName("height")] int Height,
    [property: JsonPropertyName("pixels")] int Pixels,
    [property: JsonPropertyName("classes")] IReadOnlyList<ClassSummary> Classes);

[JsonSerializable(typeof(SegmentationSummary))]
[JsonSourceGenerationOptions(WriteIndented = false)]
internal sealed partial class SummaryJsonContext : JsonSerializerContext;

/// <summary>
/// Per present class: its name and palette colour (as the colour mask and overlay paint it, so a client can draw a
/// legend without a copy of the palette), pixel count and fraction, and its connected regions (4-connected) with area, bounding box
/// [x, y, width, height] and centroid [x, y] — for counting objects and cutting regions of interest.
/// Pixels that were not predicted (255) are left out of every class.
/// </summary>
internal static class Summary
{
    public static byte[] Json(ClassMap map, ClassNames names, Palette palette, int maxRegions, bool rle) =>
        JsonSerializer.SerializeToUtf8Bytes(Build(map, names, palette, maxRegions, rle), SummaryJsonContext.Default.SegmentationSummary);

    public static SegmentationSummary Build(ClassMap map, ClassNames names, Palette palette, int maxRegions, bool rle)
    {
        int w = map.Width, h = map.Height, total = w * h;
        var counts = new int[256];
        foreach (var c in map.Classes) counts[c]++;

        var regions = Components(map);
        var classes = new List<ClassSummary>();
        for (var c = 0; c < 255; c++)
        {
            if (counts[c] == 0) continue;
            var own = regions[c];
            own.Sort((a, b) => b.Area.CompareTo(a.Area));
            var (r, g, b) = palette[(byte)c];
            classes.Add(new ClassSummary(c, names[c], [r, g, b], counts[c], (double)counts[c] / total, own.Count,
                own.Count > maxRegions ? own.GetRange(0, maxRegions) : own, rle ? Encode(map, (byte)c) : null));
        }
        return new SegmentationSummary(w, h, total, classes);
    }

    /// <summary>Connected components by a scan with an explicit stack (no recursion, one visited bitmap).</summary>
    private static List<RegionSummary>[] Components(ClassMap map)
    {
        int w = map.Width, h = map.Height;
        var result = new List<RegionSummary>[256];
        for (var i = 0; i < 256; i++) result[i] = [];
        var seen = new bool[w * h];
        var stack = new Stack<int>();
        for (var start = 0; start < seen.Length; start++)
        {
            if (seen[start] || map.Classes[start] == MapDecoder.NotPredicted) continue;
            var cls = map.Classes[start];
            int area = 0, minX = int.MaxValue, minY = int.MaxValue, maxX = -1, maxY = -1;
            long sumX = 0, sumY = 0;
            seen[start] = true;
            stack.Push(start);
            while (stack.Count > 0)
            {
                var p = stack.Pop();
                int x = p % w, y = p / w;
                area++;
                sumX += x;
                sumY += y;
                (minX, maxX, minY, maxY) = (Math.Min(minX, x), Math.Max(maxX, x), Math.Min(minY, y), Math.Max(maxY, y));
                if (x > 0) Visit(p - 1);
                if (x < w - 1) Visit(p + 1);
                if (y > 0) Visit(p - w);
                if (y < h - 1) Visit(p + w);
            }
            result[cls].Add(new RegionSummary(area, [minX, minY, maxX - minX + 1, maxY - minY + 1], [Math.Round((double)sumX / area, 2), Math.Round((double)sumY / area, 2)]));

            void Visit(int q)
            {
                if (seen[q] || map.Classes[q] != cls) return;
                seen[q] = true;
                stack.Push(q);
            }
        }
        return result;
    }

    private static Rle Encode(ClassMap map, byte cls)
    {
        var counts = new List<int>();
        var current = false;
        var run = 0;
        for (var x = 0; x < map.Width; x++)
        {
            for (var y = 0; y < map.Height; y++)
            {
                var on = map.Classes[y * map.Width + x] == cls;
                if (on != current)
                {
                    counts.Add(run);
                    run = 0;
                    current = on;
                }
                run++;
            }
        }
        counts.Add(run);
        return new Rle([map.Height, map.Width], counts);
    }
}
