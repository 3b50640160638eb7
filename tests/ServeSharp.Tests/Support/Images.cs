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
}
