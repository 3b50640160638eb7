using SkiaSharp;

namespace ServeSharp.Tests.Support;

/// <summary>Small real images, encoded as the clients would send them.</summary>
internal static class Images
{
    public static byte[] SolidPng(int width, int height, byte r, byte g, byte b)
    {
        using var bitmap = new SKBitmap(width, height);
        bitmap.Erase(new SKColor(r, g, b));
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>Seeded random RGB pixels (H×W×3) and the same pixels as a PNG: structure for a model to disagree about.</summary>
    public static (byte[] Pixels, byte[] Png) Noise(int width, int height, int seed)
    {
        var pixels = new byte[width * height * 3];
        new Random(seed).NextBytes(pixels);
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var rgba = bitmap.GetPixelSpan();
        for (var i = 0; i < width * height; i++)
        {
            rgba[i * 4] = pixels[i * 3];
            rgba[i * 4 + 1] = pixels[i * 3 + 1];
            rgba[i * 4 + 2] = pixels[i * 3 + 2];
            rgba[i * 4 + 3] = 255;
        }
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return (pixels, data.ToArray());
    }

    /// <summary>The gray values of an 8-bit grayscale PNG (image_segmenter's class mask).</summary>
    public static byte[] GrayPixels(byte[] png)
    {
        using var bitmap = SKBitmap.Decode(png);
        using var gray = new SKBitmap(new SKImageInfo(bitmap.Width, bitmap.Height, SKColorType.Gray8, SKAlphaType.Opaque));
        Assert.True(bitmap.CopyTo(gray, SKColorType.Gray8));
        return gray.GetPixelSpan().ToArray();
    }
}
