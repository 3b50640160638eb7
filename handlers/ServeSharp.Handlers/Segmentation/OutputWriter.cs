using System.Buffers;
using System.Buffers.Text;
using ServeSharp.Sdk;
using SkiaSharp;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>The response formats: TorchServe's per-pixel JSON, and PNGs (class mask, colour mask, overlay).</summary>
internal static class OutputWriter
{
    /// <summary>
    /// TorchServe's image_segmenter JSON: H×W×2 of [class index as float, max softmax probability], written as
    /// Python's json.dumps writes it (", " separators, shortest round-trip doubles). Argmax models give H×W class indices.
    /// The text is written once, into a pooled buffer that the answer carries to the client and the server then returns
    /// (224² pixels make 1.3 MB: a fresh array per answer would be a large-object allocation and a copy each time).
    /// </summary>
    public static HandlerOutput TorchServeJson(ClassMap map, int parallelism = 1)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(JsonBound(map.Width, map.Height));
        try
        {
            var parts = PixelParts.For(parallelism, map.Width * map.Height);
            var length = parts <= 1 ? WriteRows(map, 0, map.Height, buffer) : WriteInParts(map, parts, buffer);
            buffer[length++] = (byte)']';
            return HandlerOutput.Rented(buffer, length, "application/json");
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }
    }

    // Widest pixel: "[255.0, 0.0012345678901234567], " — 34 bytes; rows add "[", "], ".
    private static int JsonBound(int width, int height) => width * height * 34 + height * 4 + 4;

    // Bands of rows on up to `parts` threads (the worker's ONNX Runtime threads are idle between runs): the first band
    // straight into the answer's buffer, the others into buffers of their own, appended in order.
    private static int WriteInParts(ClassMap map, int parts, byte[] buffer)
    {
        var per = (map.Height + parts - 1) / parts;
        var bands = new byte[]?[parts];
        var lengths = new int[parts];
        try
        {
            Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, p =>
            {
                int from = p * per, to = Math.Min(map.Height, from + per);
                if (from >= to) return;
                var target = p == 0 ? buffer : bands[p] = ArrayPool<byte>.Shared.Rent(JsonBound(map.Width, to - from));
                lengths[p] = WriteRows(map, from, to, target);
            });
            var n = lengths[0];
            for (var p = 1; p < parts; p++)
            {
                if (bands[p] is not { } band) continue;
                band.AsSpan(0, lengths[p]).CopyTo(buffer.AsSpan(n));
                n += lengths[p];
            }
            return n;
        }
        finally
        {
            foreach (var band in bands)
            {
                if (band is not null) ArrayPool<byte>.Shared.Return(band);
            }
        }
    }

    // Rows [from, to) of the JSON: the opening bracket with the first row, ", " between rows; the closing one is the caller's.
    private static int WriteRows(ClassMap map, int from, int to, Span<byte> buffer)
    {
        var n = 0;
        if (from == 0) buffer[n++] = (byte)'[';
        for (var y = from; y < to; y++)
        {
            if (y > 0) n += Ascii(", [", buffer[n..]);
            else buffer[n++] = (byte)'[';
            var classes = map.Classes.AsSpan(y * map.Width, map.Width);
            var probs = map.Probs is null ? default : map.Probs.AsSpan(y * map.Width, map.Width);
            for (var x = 0; x < classes.Length; x++)
            {
                if (x > 0)
                {
                    buffer[n++] = (byte)',';
                    buffer[n++] = (byte)' ';
                }
                if (map.Probs is null)
                {
                    Utf8Formatter.TryFormat(classes[x], buffer[n..], out var written);
                    n += written;
                    continue;
                }
                var prefix = ClassPrefixes[classes[x]];
                prefix.CopyTo(buffer[n..]);
                n += prefix.Length;
                n += PythonFloat.Format(probs[x], buffer[n..]);
                buffer[n++] = (byte)']';
            }
            buffer[n++] = (byte)']';
        }
        return n;
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
