using System.Security.Cryptography;
using System.Text;
using Microsoft.ML.OnnxRuntime;
using ServeSharp.Contracts;

namespace ServeSharp.Handlers.Segmentation.Int8;

/// <summary>One image of the parity set: how many of its pixels have the same class in int8 as in fp32.</summary>
/// <param name="Image">The image's file name.</param>
/// <param name="Pixels">Pixels compared (the model's output size for that image).</param>
/// <param name="Agreeing">Pixels whose argmax class is the same.</param>
public sealed record ImageAgreement(string Image, long Pixels, long Agreeing)
{
    /// <summary>Agreeing ÷ Pixels.</summary>
    public double Agreement => Pixels == 0 ? 1 : (double)Agreeing / Pixels;
}

/// <summary>What quantizing a segmentation model produced, and how far its class maps agree with the fp32 model's.</summary>
public sealed record Int8Result
{
    /// <summary>The quantized (QDQ) ONNX model.</summary>
    public required byte[] Model { get; init; }

    /// <summary>Pixel agreement over the whole parity set (agreeing pixels ÷ pixels).</summary>
    public required double Agreement { get; init; }

    /// <summary>Per parity image.</summary>
    public required IReadOnlyList<ImageAgreement> Images { get; init; }

    /// <summary>Convs quantized, and activations given a calibrated range.</summary>
    public required int Convs { get; init; }

    /// <inheritdoc cref="Convs"/>
    public required int Activations { get; init; }

    /// <summary>SHA-256 over the calibration images' names and contents, in order (which set calibrated the model).</summary>
    public required string CalibrationSha256 { get; init; }

    /// <summary>The preprocessing the images went through (image_segmenter's mode and sizes).</summary>
    public required string Preprocessing { get; init; }
}

/// <summary>
/// Static int8 quantization of a segmentation model for <c>precision: int8</c>: calibrates activation ranges on sample
/// images preprocessed as image_segmenter preprocesses requests (from the archive's <c>handler:</c> section), writes
/// a QDQ model that ONNX Runtime's CPU provider runs as QLinearConv, and measures the argmax pixel agreement of the
/// int8 model with the fp32 one on the parity images. Whether that agreement is good enough is the caller's gate.
/// </summary>
public static class Int8Quantization
{
    /// <summary>Image files this reads from a samples folder.</summary>
    public static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".webp", ".bmp"];

    /// <summary>The images in <paramref name="folder"/> (not recursive), by name.</summary>
    public static IReadOnlyList<string> ImagesIn(string folder) =>
        [.. Directory.EnumerateFiles(folder).Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant())).Order(StringComparer.Ordinal)];

    /// <summary>Quantizes <paramref name="modelPath"/> and measures it.</summary>
    /// <param name="modelPath">The fp32 ONNX model (opset 13 or later, inline weights).</param>
    /// <param name="handlerConfig">The archive's model-config.yaml <c>handler:</c> section.</param>
    /// <param name="calibration">Calibration images.</param>
    /// <param name="parity">Images the agreement is measured on (often the same).</param>
    /// <param name="threads">ONNX Runtime intra-op threads.</param>
    public static Int8Result Quantize(string modelPath, ConfigSection handlerConfig, IReadOnlyList<string> calibration, IReadOnlyList<string> parity, int threads) =>
        Quantize(modelPath, handlerConfig, calibration, parity, threads, narrowRanges: 1f);

    /// <param name="narrowRanges">Multiplies every calibrated range (1 = as measured): below 1 clips activations, for tests of the gate.</param>
    internal static Int8Result Quantize(string modelPath, ConfigSection handlerConfig, IReadOnlyList<string> calibration, IReadOnlyList<string> parity, int threads, float narrowRanges)
    {
        if (calibration.Count == 0) throw new ArgumentException("no calibration images");
        if (parity.Count == 0) throw new ArgumentException("no parity images");
        var options = SegmenterOptions.From(handlerConfig);
        var plan = QdqQuantizer.Prepare(File.ReadAllBytes(modelPath));
        if (plan.Convs.Count == 0) throw new InvalidDataException($"{Path.GetFileName(modelPath)} has no Conv with constant weights: nothing to quantize");

        var inputs = calibration.Select(f => Prepare(f, options)).ToList();
        var ranges = Calibrator.Ranges(plan, [.. inputs.Select(i => i.Tensor)], [.. inputs.Select(i => (i.H, i.W))], threads);
        if (narrowRanges != 1f)
        {
            foreach (var key in ranges.Keys.ToList())
                ranges[key] = new TensorRange(ranges[key].Min * narrowRanges, ranges[key].Max * narrowRanges);
        }
        var quantized = QdqQuantizer.Quantize(plan, ranges);

        var images = Agreement(File.ReadAllBytes(modelPath), quantized, parity, options, threads);
        var pixels = images.Sum(i => i.Pixels);
        return new Int8Result
        {
            Model = quantized,
            Agreement = pixels == 0 ? 0 : (double)images.Sum(i => i.Agreeing) / pixels,
            Images = images,
            Convs = plan.Convs.Count,
            Activations = plan.Activations.Count,
            CalibrationSha256 = SetHash(calibration),
            Preprocessing = Describe(options),
        };
    }

    /// <summary>Argmax pixel agreement of <paramref name="int8"/> (any reduced-precision model) with <paramref name="fp32"/>, per image.</summary>
    internal static List<ImageAgreement> Agreement(byte[] fp32, byte[] int8, IReadOnlyList<string> images, SegmenterOptions options, int threads)
    {
        using var so = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = threads };
        using var reference = new InferenceSession(fp32, so);
        using var quantized = new InferenceSession(int8, so);
        var result = new List<ImageAgreement>();
        foreach (var file in images)
        {
            var (tensor, h, w) = Prepare(file, options);
            var a = ClassMap(reference, tensor, h, w);
            var b = ClassMap(quantized, tensor, h, w);
            long same = 0;
            for (var i = 0; i < a.Length; i++) same += a[i] == b[i] ? 1 : 0;
            result.Add(new ImageAgreement(Path.GetFileName(file), a.Length, same));
        }
        return result;
    }

    /// <summary>The model's class per output pixel: its argmax over logits, or its own int64 class map.</summary>
    internal static int[] ClassMap(InferenceSession session, float[] tensor, int h, int w)
    {
        var inputName = session.InputMetadata.Keys.First();
        var outputName = session.OutputMetadata.ContainsKey("out") ? "out" : session.OutputMetadata.Keys.First();
        using var input = OrtValue.CreateTensorValueFromMemory(tensor, [1, 3, h, w]);
        using var run = new RunOptions();
        using var outputs = session.Run(run, [inputName], [input], [outputName]);
        var shape = outputs[0].GetTensorTypeAndShape().Shape;
        if (shape.Length == 3) return [.. outputs[0].GetTensorDataAsSpan<long>().ToArray().Select(v => (int)v)];

        var (classes, pixels) = ((int)shape[1], (int)(shape[2] * shape[3]));
        var logits = outputs[0].GetTensorDataAsSpan<float>();
        var best = new byte[pixels];
        var probs = new float[pixels];
        Argmax.Planes(logits, classes, pixels, probabilities: true, best, probs);
        return [.. best.Select(b => (int)b)];
    }

    private static (float[] Tensor, int H, int W) Prepare(string file, SegmenterOptions options)
    {
        var image = ImageDecoder.Decode(File.ReadAllBytes(file), options.MaxPixels);
        using var input = Preprocessor.Prepare(image, options);
        return (input.Tensor.ToArray(), input.Geometry.BaseHeight, input.Geometry.BaseWidth);
    }

    internal static string SetHash(IReadOnlyList<string> files)
    {
        var all = new StringBuilder();
        foreach (var f in files) all.Append(Path.GetFileName(f)).Append(' ').Append(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(f)))).Append('\n');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(all.ToString())));
    }

    internal static string Describe(SegmenterOptions o) => o.Mode switch
    {
        "torchserve" => $"torchserve (resize {o.TorchServeResize}, centre crop {o.TorchServeCrop})",
        "torchvision" => $"torchvision (shorter side {o.ResizeSize})",
        "fixed" => $"fixed ({o.FixedSize?.Width}x{o.FixedSize?.Height})",
        _ => o.Mode,
    };
}
