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
    public static SegInput Prepare(RgbImage image, SegmenterOptions o) => Prepare(image, image.Width, image.Height, o);

    /// <summary>
    /// <paramref name="image"/> as the model's input, for an original image of <paramref name="w"/>×<paramref name="h"/>
    /// (larger than <paramref name="image"/> when the decoder drafted it): sizes and geometry follow the original.
    /// </summary>
    public static SegInput Prepare(RgbImage image, int w, int h, SegmenterOptions o)
    {
        var (rw, rh) = ResizedSize(w, h, o);
        RgbImage resized;
        Geometry geometry;
        if (o.Mode == "torchserve")
        {
            // transforms.Resize(256) then CenterCrop(224): TorchServe's image_segmenter.
            var crop = o.TorchServeCrop;
            var (cw, ch) = (Math.Min(crop, rw), Math.Min(crop, rh));
            // torchvision's centre crop offsets: int(round((size - crop) / 2)), Python's round (half to even).
            var left = (int)Math.Round((rw - cw) / 2.0, MidpointRounding.ToEven);
            var top = (int)Math.Round((rh - ch) / 2.0, MidpointRounding.ToEven);
            geometry = new Geometry(w, h, rw, rh, left, top, cw, ch);
            // Only the crop is computed: the pixels the resize would have put outside it are never used.
            resized = PilResize.ResizeCrop(image, rw, rh, left, top, cw, ch);
        }
        else
        {
            resized = PilResize.Resize(image, rw, rh); // the image itself when the size stays (mode original)
            geometry = new Geometry(w, h, rw, rh, 0, 0, rw, rh);
        }

        var length = 3 * resized.Width * resized.Height;
        var tensor = System.Buffers.ArrayPool<float>.Shared.Rent(length);
        TensorOps.Normalize(resized, o.Mean, o.Std, tensor.AsSpan(0, length));
        return new SegInput(image, tensor, geometry, o);
    }

    /// <summary>The size the mode resizes a w×h image to (before torchserve's centre crop); w×h itself in mode original.</summary>
    public static (int Width, int Height) ResizedSize(int w, int h, SegmenterOptions o) => o.Mode switch
    {
        "torchserve" => PilResize.ShorterSideTo(w, h, o.TorchServeResize),
        "torchvision" => PilResize.ShorterSideTo(w, h, o.ResizeSize),
        "fixed" => o.FixedSize!.Value,
        _ => (w, h),
    };

    /// <summary>
    /// The least size a w×h JPEG may be drafted to (see <see cref="SegmenterOptions.JpegDraft"/>): four times the resize's
    /// target each way (twice failed the parity gate: 98.76 % on the worst test photograph). Null when every pixel is needed: drafting off, no resize, or the overlay (drawn on the image).
    /// </summary>
    public static (int Width, int Height)? DraftSize(int w, int h, SegmenterOptions o)
    {
        if (!o.JpegDraft || o.Mode == "original" || o.Output == "overlay") return null;
        var (rw, rh) = ResizedSize(w, h, o);
        return (4 * rw, 4 * rh);
    }
}
