namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// How many threads per-pixel work after a run is split over (argmax and softmax, TorchServe's JSON): up to the
/// worker's ONNX Runtime threads, which sit idle between runs, but never parts so small that handing one to another
/// thread costs more than computing it.
/// </summary>
internal static class PixelParts
{
    // Below this many pixels a part costs less than handing it to another thread.
    private const int MinPixelsPerPart = 8192;

    public static int For(int parallelism, int pixels) => Math.Min(parallelism, pixels / MinPixelsPerPart);
}
