using System.Text;
using System.Text.Json;
using ServeSharp.Sdk;
using SkiaSharp;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// Request bytes → RGB pixels, as TorchServe's vision handler takes them: raw image bytes, or a base64 string
/// (alone or as "data"/"b64"/"body"/"image" in a JSON object, as KServe's v1 instances hold it). JPEG, PNG, WebP, BMP, GIF (first frame) through
/// SkiaSharp, EXIF orientation applied. Every failure is a 400 for this request alone.
/// </summary>
internal static class ImageDecoder
{
    /// <summary>
    /// The request's image, and its size as it was sent (after EXIF orientation). <paramref name="draft"/> says, for
    /// that size, the least size the pixels may be decoded at (null: all of them): a JPEG is then decoded at the
    /// smallest of libjpeg's 1/8, 1/4 and 1/2 scales that keeps it, so the image returned may be smaller than the one sent.
    /// </summary>
    public static RgbImage Decode(InferenceRequest request, long maxPixels, Func<int, int, (int Width, int Height)?> draft, out int width, out int height)
    {
        var data = request.Data ?? throw HandlerException.BadRequest("no image in the request (send it as the body or as field 'data')");
        var bytes = Unwrap(data);
        if (bytes.Length == 0) throw HandlerException.BadRequest("the image is empty");
        return Decode(bytes, maxPixels, draft, out width, out height);
    }

    /// <summary>Every pixel of the image.</summary>
    public static RgbImage Decode(ReadOnlyMemory<byte> bytes, long maxPixels) => Decode(bytes, maxPixels, static (_, _) => null, out _, out _);

    /// <summary>As <see cref="Decode(InferenceRequest, long, Func{int, int, ValueTuple{int, int}?}, out int, out int)"/>, from the image's bytes.</summary>
    public static RgbImage Decode(ReadOnlyMemory<byte> bytes, long maxPixels, Func<int, int, (int Width, int Height)?> draft, out int width, out int height)
    {
        using var stream = new MemoryStream(bytes.ToArray(), writable: false);
        using var codec = SKCodec.Create(stream, out var result)
            ?? throw HandlerException.BadRequest($"the body is not a decodable image ({result}); send JPEG, PNG, WebP, BMP or GIF");
        var info = codec.Info;
        if ((long)info.Width * info.Height > maxPixels)
            throw new HandlerException(413, $"the image is {info.Width}x{info.Height} = {(long)info.Width * info.Height} pixels, over the limit of {maxPixels} (max_pixels)");

        var transposed = IsTransposed(codec.EncodedOrigin);
        (width, height) = transposed ? (info.Height, info.Width) : (info.Width, info.Height);
        var size = codec.EncodedFormat == SKEncodedImageFormat.Jpeg && draft(width, height) is { } least
            ? Drafted(codec, transposed ? (least.Height, least.Width) : least)
            : info.Size;
        using var decoded = new SKBitmap(new SKImageInfo(size.Width, size.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        var status = codec.GetPixels(decoded.Info, decoded.GetPixels());
        if (status is not (SKCodecResult.Success or SKCodecResult.IncompleteInput))
            throw HandlerException.BadRequest($"the image cannot be decoded ({status})");
        return ToRgb(decoded, codec.EncodedOrigin);
    }

    // The smallest of libjpeg's DCT scales whose size is at least `least` (in the encoded orientation), else the full size.
    private static SKSizeI Drafted(SKCodec codec, (int Width, int Height) least)
    {
        foreach (var scale in (ReadOnlySpan<float>)[0.125f, 0.25f, 0.5f])
        {
            var size = codec.GetScaledDimensions(scale);
            if (size.Width >= least.Width && size.Height >= least.Height) return size;
        }
        return codec.Info.Size;
    }

    private static bool IsTransposed(SKEncodedOrigin origin) =>
        origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;

    /// <summary>Drops alpha (as PIL's convert("RGB") does) and applies the EXIF orientation.</summary>
    private static RgbImage ToRgb(SKBitmap rgba, SKEncodedOrigin origin)
    {
        int w = rgba.Width, h = rgba.Height;
        var transposed = IsTransposed(origin);
        var image = transposed ? RgbImage.Create(h, w) : RgbImage.Create(w, h);
        var src = rgba.GetPixelSpan();
        var dst = image.Pixels;
        if (origin == SKEncodedOrigin.TopLeft)
        {
            for (int s = 0, d = 0; d < dst.Length; s += 4, d += 3)
            {
                dst[d] = src[s];
                dst[d + 1] = src[s + 1];
                dst[d + 2] = src[s + 2];
            }
            return image;
        }
        for (var y = 0; y < h; y++)
        {
            for (var x = 0; x < w; x++)
            {
                var (tx, ty) = origin switch
                {
                    SKEncodedOrigin.TopRight => (w - 1 - x, y),
                    SKEncodedOrigin.BottomRight => (w - 1 - x, h - 1 - y),
                    SKEncodedOrigin.BottomLeft => (x, h - 1 - y),
                    SKEncodedOrigin.LeftTop => (y, x),
                    SKEncodedOrigin.RightTop => (h - 1 - y, x),
                    SKEncodedOrigin.RightBottom => (h - 1 - y, w - 1 - x),
                    SKEncodedOrigin.LeftBottom => (y, w - 1 - x),
                    _ => (x, y),
                };
                var s = (y * w + x) * 4;
                var d = (ty * image.Width + tx) * 3;
                dst[d] = src[s];
                dst[d + 1] = src[s + 1];
                dst[d + 2] = src[s + 2];
            }
        }
        return image;
    }

    /// <summary>Base64 in JSON or as text is decoded; anything else is taken as image bytes.</summary>
    private static ReadOnlyMemory<byte> Unwrap(RequestParameter data)
    {
        var bytes = data.Value;
        var span = bytes.Span.TrimStart(" \t\r\n"u8);
        if (span.Length == 0) return ReadOnlyMemory<byte>.Empty;
        if (span[0] is (byte)'{' or (byte)'"' || (data.ContentType?.Contains("json", StringComparison.OrdinalIgnoreCase) ?? false))
        {
            try
            {
                using var doc = JsonDocument.Parse(bytes);
                var root = doc.RootElement;
                var text = root.ValueKind == JsonValueKind.String ? root.GetString()
                    : root.ValueKind == JsonValueKind.Object ? FirstString(root, "data", "b64", "body", "image", "instances") : null;
                return text is null ? throw HandlerException.BadRequest("JSON body must be a base64 string or an object with a base64 'data' field") : Base64(text);
            }
            catch (JsonException e)
            {
                throw HandlerException.BadRequest($"the body looks like JSON but does not parse: {e.Message}");
            }
        }
        if (data.ContentType?.StartsWith("text/", StringComparison.OrdinalIgnoreCase) == true) return Base64(Encoding.ASCII.GetString(span));
        return bytes;
    }

    private static string? FirstString(JsonElement root, params string[] names)
    {
        foreach (var name in names)
        {
            if (root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String) return v.GetString();
        }
        return null;
    }

    private static byte[] Base64(string text)
    {
        var comma = text.IndexOf(',');
        if (text.StartsWith("data:", StringComparison.Ordinal) && comma > 0) text = text[(comma + 1)..]; // data: URLs
        try
        {
            return Convert.FromBase64String(text.Trim());
        }
        catch (FormatException)
        {
            throw HandlerException.BadRequest("the image string is not valid base64");
        }
    }
}
