using System.Buffers;
using System.Buffers.Text;
using SkiaSharp;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>The response formats: TorchServe's per-pixel JSON, and PNGs (class mask, colour mask, overlay).</summary>
internal static class OutputWriter
{
    /// <summary>
    /// TorchServe's image_segmenter JSON: H×W×2 of [class index as float, max softmax probability], written as
    /// Python's json.dumps writes it (", " separators, shortest round-trip doubles). Argmax models give H×W class indices.
    /// </summary>
    public static byte[] TorchServeJson(ClassMap map)
    {
        // Widest pixel: "[255.0, 0.0012345678901234567], " — 34 bytes; rows add "[", "], ".
        var buffer = ArrayPool<byte>.Shared.Rent(map.Width * map.Height * 34 + map.Height * 4 + 4);
        try
        {
            var n = 0;
            buffer[n++] = (byte)'[';
            for (var y = 0; y < map.Height; y++)
            {
                if (y > 0) n += Ascii(", [", buffer.AsSpan(n));
                else buffer[n++] = (byte)'[';
                for (var x = 0; x < map.Width; x++)
                {
                    var i = y * map.Width + x;
                    if (x > 0) n += Ascii(", ", buffer.AsSpan(n));
                    if (map.Probs is null)
                    {
                        Utf8Formatter.TryFormat(map.Classes[i], buffer.AsSpan(n), out var written);
                        n += written;
                        continue;
                    }
                    var prefix = ClassPrefixes[map.Classes[i]];
                    prefix.CopyTo(buffer.AsSpan(n));
                    n += prefix.Length;
                    n += PythonFloat.Format(map.Probs[i], buffer.AsSpan(n));
                    buffer[n++] = (byte)']';
                }
                buffer[n++] = (byte)']';
            }
            buffer[n++] = (byte)']';
            return buffer.AsSpan(0, n).ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    // "[k.0, " for every class index: the part of a pixel that does not change with its probability.
    private static readonly byte[][] ClassPrefixes = Enumerable.Range(0, 256).Select(k => System.Text.Encoding.ASCII.GetBytes($"[{k}.0, ")).ToArray();

    private static int Ascii(string text, Span<byte> destination)
    {
        for (var i = 0; i < text.Length; i++) destination[i] = (byte)text[i];
        return text.Length;
    }

    /// <summary>An 8-bit grayscale PNG whose pixel values are the class indices.</summary>
    public static byte[] MaskPng(ClassMap map)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(map.Width, map.Height, SKColorType.Gray8, SKAlphaType.Opaque));
        map.Classes.AsSpan().CopyTo(bitmap.GetPixelSpan());
        return Encode(bitmap);
    }

    /// <summary>The classes painted with the palette.</summary>
    public static byte[] ColorPng(ClassMap map, Palette palette) => Rgba(map.Width, map.Height, (i, px) =>
    {
        var (r, g, b) = palette[map.Classes[i]];
        px[0] = r; px[1] = g; px[2] = b; px[3] = 255;
    });

    /// <summary>The colour mask blended over the image (alpha = mask weight); background (0) and 255 stay as the image.</summary>
    public static byte[] OverlayPng(ClassMap map, RgbImage image, Palette palette, double alpha)
    {
        var a = (float)alpha;
        return Rgba(map.Width, map.Height, (i, px) =>
        {
            var cls = map.Classes[i];
            byte ir = image.Pixels[i * 3], ig = image.Pixels[i * 3 + 1], ib = image.Pixels[i * 3 + 2];
            if (cls is 0 or MapDecoder.NotPredicted)
            {
                px[0] = ir; px[1] = ig; px[2] = ib;
            }
            else
            {
                var (r, g, b) = palette[cls];
                px[0] = (byte)MathF.Round((1 - a) * ir + a * r);
                px[1] = (byte)MathF.Round((1 - a) * ig + a * g);
                px[2] = (byte)MathF.Round((1 - a) * ib + a * b);
            }
            px[3] = 255;
        });
    }

    private delegate void PixelWriter(int index, Span<byte> rgba);

    private static byte[] Rgba(int width, int height, PixelWriter write)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var pixels = bitmap.GetPixelSpan();
        for (var i = 0; i < width * height; i++) write(i, pixels.Slice(i * 4, 4));
        return Encode(bitmap);
    }

    private static byte[] Encode(SKBitmap bitmap)
    {
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }
}
