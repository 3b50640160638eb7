using System.Text.Json;
using ServeSharp.Sdk;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// Class colours: PASCAL VOC's bit-pattern palette (index 255, "ignore", is (224, 224, 192)), unless the archive
/// ships a palette file: a JSON list of [r, g, b], one per class index.
/// </summary>
internal sealed class Palette
{
    private readonly byte[] _rgb; // 256 × 3

    private Palette(byte[] rgb) => _rgb = rgb;

    public static Palette Voc { get; } = new(VocColours());

    public (byte R, byte G, byte B) this[byte index] => (_rgb[index * 3], _rgb[index * 3 + 1], _rgb[index * 3 + 2]);

    public static Palette Load(string path)
    {
        var rgb = VocColours();
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var i = 0;
            foreach (var colour in doc.RootElement.EnumerateArray())
            {
                if (i > 255) break;
                for (var c = 0; c < 3; c++) rgb[i * 3 + c] = (byte)Math.Clamp(colour[c].GetInt32(), 0, 255);
                i++;
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or IndexOutOfRangeException or FormatException)
        {
            throw new HandlerLoadException($"{Path.GetFileName(path)}: a palette must be a JSON list of [r, g, b] triples ({e.Message})", e);
        }
        return new Palette(rgb);
    }

    private static byte[] VocColours()
    {
        var rgb = new byte[256 * 3];
        for (var i = 0; i < 256; i++)
        {
            int r = 0, g = 0, b = 0, c = i;
            for (var j = 0; j < 8; j++)
            {
                r |= ((c >> 0) & 1) << (7 - j);
                g |= ((c >> 1) & 1) << (7 - j);
                b |= ((c >> 2) & 1) << (7 - j);
                c >>= 3;
            }
            (rgb[i * 3], rgb[i * 3 + 1], rgb[i * 3 + 2]) = ((byte)r, (byte)g, (byte)b);
        }
        return rgb;
    }
}

/// <summary>index_to_name.json, TorchServe's format ({"0": "background", ...}); missing names are class_&lt;i&gt;.</summary>
internal sealed class ClassNames(IReadOnlyDictionary<int, string> names)
{
    public string this[int index] => names.TryGetValue(index, out var n) ? n : $"class_{index}";

    public static ClassNames Load(string? path)
    {
        if (path is null || !File.Exists(path)) return new ClassNames(new Dictionary<int, string>());
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var names = new Dictionary<int, string>();
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (!int.TryParse(p.Name, out var i)) continue;
                // TorchServe accepts "name" or ["id", "name"] (ImageNet style): take the last string.
                names[i] = p.Value.ValueKind == JsonValueKind.Array ? p.Value[p.Value.GetArrayLength() - 1].GetString() ?? "" : p.Value.GetString() ?? "";
            }
            return new ClassNames(names);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new HandlerLoadException($"{Path.GetFileName(path)}: expected {{\"0\": \"name\", ...}} ({e.Message})", e);
        }
    }
}
