namespace ServeSharp.Handlers.Segmentation;

/// <summary>An 8-bit RGB image, row-major, 3 bytes a pixel (what PIL's "RGB" mode holds).</summary>
internal sealed record RgbImage(int Width, int Height, byte[] Pixels)
{
    public static RgbImage Create(int width, int height) => new(width, height, new byte[checked(width * height * 3)]);

    /// <summary>The rectangle [x, x+w) × [y, y+h), copied.</summary>
    public RgbImage Crop(int x, int y, int w, int h)
    {
        var result = Create(w, h);
        for (var row = 0; row < h; row++)
            Pixels.AsSpan(((y + row) * Width + x) * 3, w * 3).CopyTo(result.Pixels.AsSpan(row * w * 3));
        return result;
    }
}
