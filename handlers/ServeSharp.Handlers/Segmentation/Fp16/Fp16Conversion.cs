using ServeSharp.Contracts;
using ServeSharp.Handlers.Segmentation.Int8;

namespace ServeSharp.Handlers.Segmentation.Fp16;

/// <summary>What converting a segmentation model to fp16 produced, and how far its class maps agree with fp32's.</summary>
public sealed record Fp16Result
{
    /// <summary>The fp16 ONNX model (float inputs and outputs, Casts at the boundaries).</summary>
    public required byte[] Model { get; init; }

    /// <summary>Pixel agreement over the whole parity set (agreeing pixels ÷ pixels).</summary>
    public required double Agreement { get; init; }

    /// <summary>Per parity image.</summary>
    public required IReadOnlyList<ImageAgreement> Images { get; init; }

    /// <summary>Convs whose weights became float16.</summary>
    public required int Convs { get; init; }

    /// <summary>SHA-256 over the parity images' names and contents, in order.</summary>
    public required string ParitySha256 { get; init; }

    /// <summary>The preprocessing the images went through (image_segmenter's mode and sizes).</summary>
    public required string Preprocessing { get; init; }
}

/// <summary>
/// <c>precision: fp16</c> at archive time, as int8 is: converts the model (<see cref="Float16Converter"/>) and measures the
/// argmax pixel agreement with fp32 on parity images, preprocessed as image_segmenter preprocesses requests. The figure is
/// measured on ONNX Runtime's CPU provider, which has no float16 Conv kernel on x86 and runs the fp16 graph by inserting
/// Casts to fp32 around such nodes: it measures the float16 weights and the fp16 tensors between fp32 kernels, not CUDA's
/// fp16 arithmetic. Whether the agreement is good enough is the caller's gate.
/// </summary>
public static class Fp16Conversion
{
    /// <summary>Converts <paramref name="modelPath"/> and measures it.</summary>
    public static Fp16Result Convert(string modelPath, ConfigSection handlerConfig, IReadOnlyList<string> parity, int threads)
    {
        if (parity.Count == 0) throw new ArgumentException("no parity images");
        var options = SegmenterOptions.From(handlerConfig);
        var fp32 = File.ReadAllBytes(modelPath);
        var fp16 = Float16Converter.Convert(fp32);
        var images = Int8Quantization.Agreement(fp32, fp16, parity, options, threads);
        var pixels = images.Sum(i => i.Pixels);
        return new Fp16Result
        {
            Model = fp16,
            Agreement = pixels == 0 ? 0 : (double)images.Sum(i => i.Agreeing) / pixels,
            Images = images,
            Convs = Int8.Onnx.ModelProto.Parser.ParseFrom(fp16).Graph.Node.Count(n => n.OpType == "Conv"),
            ParitySha256 = Int8Quantization.SetHash(parity),
            Preprocessing = Int8Quantization.Describe(options),
        };
    }
}
