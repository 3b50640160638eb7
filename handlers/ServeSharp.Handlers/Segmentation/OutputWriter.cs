using System.Buffers;
using System.Buffers.Text;
using System.Globalization;
using SkiaSharp;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>The response formats: TorchServe's per-pixel JSON, and PNGs (class mask, colour mask, overlay).</summary>
public static class OutputWriter
{
    /// <summary>
    /// TorchServe's image_segmenter JSON: H×W×2 of [class index as float, max softmax probability], written as
    /// Python's json.dumps writes it (", " separators, shortest round-trip doubles). Argmax models give H×W class indices.
    /// </summary>
    public static byte[] TorchServeJson(ClassMap map)
    {
        var buffer = new ArrayBufferWriter<byte>(map.Width * map.Height * (map.Probs is null ? 4 : 28) + 16);
        Span<byte> number = stackalloc byte[32];
        Write(buffer, "[");
        for (var y = 0; y < map.Height; y++)
        {
            Write(buffer, y == 0 ? "[" : ", [");
            for (var x = 0; x < map.Width; x++)
            {
                var i = y * map.Width + x;
                if (x > 0) Write(buffer, ", ");
                if (map.Probs is null)
                {
                    Utf8Formatter.TryFormat(map.Classes[i], number, out var n);
                    buffer.Write(number[..n]);
                    continue;
                }
                Write(buffer, "[");
                Utf8Formatter.TryFormat(map.Classes[i], number, out var len);
                buffer.Write(number[..len]);
                Write(buffer, ".0, ");
                WritePythonFloat(buffer, map.Probs[i], number);
                Write(buffer, "]");
            }
            Write(buffer, "]");
        }
        Write(buffer, "]");
        return buffer.WrittenSpan.ToArray();
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

    private static void Write(ArrayBufferWriter<byte> buffer, string ascii)
    {
        var span = buffer.GetSpan(ascii.Length);
        for (var i = 0; i < ascii.Length; i++) span[i] = (byte)ascii[i];
        buffer.Advance(ascii.Length);
    }

    // Python's repr of the float32 value widened to double: shortest round-trip, lower-case exponent.
    private static void WritePythonFloat(ArrayBufferWriter<byte> buffer, float value, Span<byte> scratch)
    {
        Span<char> chars = stackalloc char[32];
        ((double)value).TryFormat(chars, out var n, "R", CultureInfo.InvariantCulture);
        var text = chars[..n];
        var hasDot = text.IndexOfAny('.', 'E') >= 0;
        for (var i = 0; i < n; i++) scratch[i] = (byte)char.ToLowerInvariant(text[i]);
        buffer.Write(scratch[..n]);
        if (!hasDot) Write(buffer, ".0");
    }
}
