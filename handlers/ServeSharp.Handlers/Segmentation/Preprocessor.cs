namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// Where the model's input sits in the original image: the image was resized to Resized, and the model saw
/// the Base-sized window at (CropX, CropY) of it (a centre crop in torchserve mode, the whole image otherwise).
/// </summary>
internal sealed record Geometry(int OriginalWidth, int OriginalHeight, int ResizedWidth, int ResizedHeight, int CropX, int CropY, int BaseWidth, int BaseHeight)
{
    public bool IsCropped => BaseWidth != ResizedWidth || BaseHeight != ResizedHeight;
}

/// <summary>
/// One request, ready for the model: the decoded image, its normalised CHW tensor (in a pooled buffer, returned when
/// the handler disposes the input), and the options in force.
/// </summary>
internal sealed record SegInput(RgbImage Image, float[] Buffer, Geometry Geometry, SegmenterOptions Options) : IDisposable
{
    private int _returned;

    /// <summary>The 3×H×W tensor at the base size (the pooled buffer may be longer).</summary>
    public Memory<float> Tensor => Buffer.AsMemory(0, 3 * Geometry.BaseWidth * Geometry.BaseHeight);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _returned, 1) == 0) System.Buffers.ArrayPool<float>.Shared.Return(Buffer);
    }
}

/// <summary>The preprocessing modes: TorchServe's image_segmenter, torchvision's eval preset, a fixed size, or none.</summary>
internal static class Preprocessor
{
    public static SegInput Prepare(RgbImage image, SegmenterOptions o)
    {
        int w = image.Width, h = image.Height;
        RgbImage resized;
        Geometry geometry;
        switch (o.Mode)
        {
            case "torchserve":
            {
                // transforms.Resize(256) then CenterCrop(224): TorchServe's image_segmenter.
                var (rw, rh) = PilResize.ShorterSideTo(w, h, o.TorchServeResize);
                var crop = o.TorchServeCrop;
                var (cw, ch) = (Math.Min(crop, rw), Math.Min(crop, rh));
                // torchvision's centre crop offsets: int(round((size - crop) / 2)), Python's round (half to even).
                var left = (int)Math.Round((rw - cw) / 2.0, MidpointRounding.ToEven);
                var top = (int)Math.Round((rh - ch) / 2.0, MidpointRounding.ToEven);
                geometry = new Geometry(w, h, rw, rh, left, top, cw, ch);
                // Only the crop is computed: the pixels the resize would have put outside it are never used.
                resized = PilResize.ResizeCrop(image, rw, rh, left, top, cw, ch);
                break;
            }
            case "torchvision":
            {
                var (rw, rh) = PilResize.ShorterSideTo(w, h, o.ResizeSize);
                resized = PilResize.Resize(image, rw, rh);
                geometry = new Geometry(w, h, rw, rh, 0, 0, rw, rh);
                break;
            }
            case "fixed":
            {
                var (fw, fh) = o.FixedSize!.Value;
                resized = PilResize.Resize(image, fw, fh);
                geometry = new Geometry(w, h, fw, fh, 0, 0, fw, fh);
                break;
            }
            default:
                resized = image;
                geometry = new Geometry(w, h, w, h, 0, 0, w, h);
                break;
        }

        var length = 3 * resized.Width * resized.Height;
        var tensor = System.Buffers.ArrayPool<float>.Shared.Rent(length);
        TensorOps.Normalize(resized, o.Mean, o.Std, tensor.AsSpan(0, length));
        return new SegInput(image, tensor, geometry, o);
    }
}
