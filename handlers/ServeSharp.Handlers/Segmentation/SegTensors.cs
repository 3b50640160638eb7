using System.Runtime.InteropServices;
using ServeSharp.Sdk;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// image_segmenter's tensors for the Open Inference Protocol. In: an encoded image (BYTES), RGB pixels
/// (UINT8 H×W×3, preprocessed like a decoded image) or the model's own input (FP32 3×H×W, already normalised: it goes
/// to the model as it is). Out: <c>classes</c> (UINT8 H×W) and, when asked, <c>probabilities</c>
/// (FP32 C×H×W), at the size the torchserve JSON answers at (the model's input in torchserve mode, else the image's).
/// </summary>
internal static class SegTensors
{
    public const string Classes = "classes";
    public const string Probabilities = "probabilities";

    /// <summary>The request's tensor input prepared for the model, or null when it carries an encoded image instead.</summary>
    public static SegInput? Prepare(InferenceRequest request, SegmenterOptions options, (int H, int W)? fixedInput)
    {
        if (request.Data is not { } data || !Tensor.TryFromParameter(data, out var tensor) || tensor.Datatype == "BYTES") return null;
        switch (tensor.Datatype, tensor.Shape)
        {
            case ("UINT8", [var h and > 0, var w and > 0, 3]):
                Check(h * w, options);
                return Preprocessor.Prepare(new RgbImage((int)w, (int)h, tensor.Data.ToArray()), options);
            case ("FP32", [3, var h and > 0, var w and > 0]):
            {
                Check(h * w, options);
                if (fixedInput is { } f && (f.H != h || f.W != w))
                    throw HandlerException.BadRequest($"the model takes FP32 [3, {f.H}, {f.W}]; the tensor is [3, {h}, {w}]");
                var length = (int)(3 * h * w);
                var buffer = System.Buffers.ArrayPool<float>.Shared.Rent(length);
                MemoryMarshal.Cast<byte, float>(tensor.Data.Span).CopyTo(buffer);
                // No image behind it: the geometry is the tensor's, and there are no pixels to overlay.
                var geometry = new Geometry((int)w, (int)h, (int)w, (int)h, 0, 0, (int)w, (int)h);
                return new SegInput(new RgbImage((int)w, (int)h, []), buffer, geometry, options);
            }
            default:
                throw HandlerException.BadRequest(
                    $"image_segmenter takes an encoded image (BYTES), RGB pixels (UINT8 [H, W, 3]) or the model's input (FP32 [3, H, W]); got {tensor.Datatype} [{string.Join(", ", tensor.Shape)}]");
        }
    }

    private static void Check(long pixels, SegmenterOptions options)
    {
        if (pixels > options.MaxPixels)
            throw new HandlerException(413, $"the tensor holds {pixels} pixels, over the limit of {options.MaxPixels} (max_pixels)");
    }

    /// <summary>The tensors the request asked for (parameter <c>outputs</c>; <c>classes</c> when it names none).</summary>
    public static HandlerOutput Write(SegOutput output, InferenceRequest request)
    {
        var asked = request.GetString(Tensor.RequestedOutputsParameter) is { Length: > 0 } list
            ? list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            : [Classes];
        var map = output.Input.Options.Mode == "torchserve" ? MapDecoder.AtBase(output) : MapDecoder.ToOriginal(output);
        var tensors = new List<Tensor>(asked.Length);
        foreach (var name in asked)
        {
            tensors.Add(name switch
            {
                Classes => new Tensor(Classes, "UINT8", [map.Height, map.Width], map.Classes),
                Probabilities when output.Scores is { } scores => new Tensor(Probabilities, "FP32", [scores.Classes, map.Height, map.Width], ProbabilityBytes(scores, map)),
                Probabilities => throw HandlerException.BadRequest("probabilities are not available here: the model ends in argmax, or sliding windows (crop_size) are on"),
                _ => throw HandlerException.BadRequest($"image_segmenter has no output '{name}'; it has {Classes} and {Probabilities}"),
            });
        }
        return Tensor.Output(tensors);
    }

    // Written straight into the bytes the tensor carries: no float[] to copy from.
    private static byte[] ProbabilityBytes(ScoreMap scores, ClassMap map)
    {
        var bytes = new byte[checked(scores.Classes * map.Height * map.Width * sizeof(float))];
        MapDecoder.Probabilities(scores, map.Width, map.Height, MemoryMarshal.Cast<byte, float>(bytes.AsSpan()));
        return bytes;
    }
}
