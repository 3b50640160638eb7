using SkiaSharp;

namespace ServeSharp.Bench;

/// <summary>The CHW input shapes the server's preprocess makes from the bench's photographs, for the bare model.</summary>
public static class InputShapes
{
    /// <summary>TorchServe's mode: Resize(256), CenterCrop(224), whatever the photograph.</summary>
    public static IReadOnlyList<int[]> TorchServe => [[3, 224, 224]];

    /// <summary>torchvision's Resize(int) per photograph: the shorter side becomes <paramref name="size"/>, the longer int(size·long/short).</summary>
    public static IReadOnlyList<int[]> Torchvision(IEnumerable<byte[]> images, int size)
    {
        var shapes = new List<int[]>();
        foreach (var image in images)
        {
            using var data = SKData.CreateCopy(image);
            using var codec = SKCodec.Create(data) ?? throw new InvalidOperationException("the bench's photograph does not decode");
            var (w, h) = (codec.Info.Width, codec.Info.Height);
            shapes.Add(w <= h ? [3, (int)((long)size * h / w), size] : [3, size, (int)((long)size * w / h)]);
        }
        return shapes;
    }
}
