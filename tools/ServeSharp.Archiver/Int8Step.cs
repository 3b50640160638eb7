using System.Globalization;
using System.Security.Cryptography;
using Microsoft.ML.OnnxRuntime;
using ServeSharp.Archive;
using ServeSharp.Handlers.Segmentation.Int8;

namespace ServeSharp.Archiver;

/// <summary>
/// <c>precision: int8</c> at archive time: quantizes the serialized model (calibrated on --calibration-samples),
/// holds it to the parity gate on --parity-samples, and adds the int8 model and MAR-INF/quantization.json to the
/// archive. Below the gate it throws (nothing is written) unless --force-int8. Owns the temporary folder the
/// quantized model waits in until the archive is written.
/// </summary>
internal sealed class Int8Step : IDisposable
{
    private readonly string _folder;

    private Int8Step(ArchiveSpec spec, string folder)
    {
        Spec = spec;
        _folder = folder;
    }

    /// <summary>The spec with the quantized model and its report added.</summary>
    public ArchiveSpec Spec { get; }

    /// <summary>Null when the config does not ask for int8 (and then no int8 option may be given).</summary>
    public static Int8Step? Prepare(ArchiverCommand command, TextWriter log)
    {
        var spec = command.Spec;
        var config = spec.ConfigFile is { } file && File.Exists(file) ? ModelConfigReader.Read(file) : ModelConfig.Empty;
        if (config.Precision != QuantizationReport.Int8Precision)
        {
            if (command.CalibrationSamples is not null || command.ForceInt8)
                throw new ArgumentException("--calibration-samples and --force-int8 are for precision: int8, which the --config-file does not set");
            if (command.ParitySamples is not null && config.Precision != QuantizationReport.Fp16Precision)
                throw new ArgumentException("--parity-samples is for precision: int8 or fp16, which the --config-file does not set");
            return null;
        }

        if (command.CalibrationSamples is not { } calibrationDir)
            throw new ArgumentException("model-config.yaml says precision: int8: give --calibration-samples DIR, images like the ones the model will serve, to calibrate the int8 model and check it against fp32");
        if (spec.SerializedFile is not { } model || !model.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) || !File.Exists(model))
            throw new ArgumentException($"precision: int8 quantizes the --serialized-file, which must be an existing .onnx model (got '{spec.SerializedFile}')");
        if (spec.Handler != "image_segmenter")
            throw new ArgumentException($"precision: int8 is calibrated with image_segmenter's preprocessing; handler '{spec.Handler}' is not image_segmenter");
        var target = ArchiveWriter.TargetPath(spec);
        if ((File.Exists(target) || Directory.Exists(target)) && !spec.Force)
            throw new ArchiveException($"{target} already exists; use -f/--force to overwrite it");

        var calibration = Images(calibrationDir, "--calibration-samples");
        var parity = command.ParitySamples is { } parityDir ? Images(parityDir, "--parity-samples") : calibration;
        log.WriteLine($"int8: calibrating {Path.GetFileName(model)} on {calibration.Count} images, measuring agreement with fp32 on {parity.Count}");
        if (!CpuFeatures.HasVnni)
            log.WriteLine("int8: this CPU has no VNNI (AVX512-VNNI or AVX-VNNI): the int8 model may be no faster than fp32 here");

        Int8Result result;
        try
        {
            result = Int8Quantization.Quantize(model, config.Handler, calibration, parity, Environment.ProcessorCount);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ArchiveException($"int8: ONNX Runtime failed on {Path.GetFileName(model)}: {e.Message}", e);
        }

        var passed = result.Agreement >= QuantizationReport.DefaultGate;
        var worst = result.Images.MinBy(i => i.Agreement)!;
        var figures = $"{Percent(result.Agreement)} of pixels over {parity.Count} parity images (worst {worst.Image}: {Percent(worst.Agreement)}), gate {Percent(QuantizationReport.DefaultGate)}";
        if (!passed && !command.ForceInt8)
            throw new ArchiveException($"int8 refused: the quantized model's class maps agree with fp32 on {figures}; nothing was written. " +
                "Calibrate on images like the ones the model will serve, keep precision: fp32, or pass --force-int8 to write it anyway.");
        log.WriteLine($"int8: {result.Convs} Convs quantized; agreement with fp32 {figures}{(passed ? "" : " — below the gate, written because of --force-int8")}");

        var folder = Directory.CreateTempSubdirectory("servesharp-int8-").FullName;
        var quantizedName = Path.GetFileNameWithoutExtension(model) + ".int8.onnx";
        var quantizedPath = Path.Combine(folder, quantizedName);
        File.WriteAllBytes(quantizedPath, result.Model);
        var report = new QuantizationReport
        {
            QuantizedFile = quantizedName,
            SourceFile = Path.GetFileName(model),
            SourceSha256 = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(model))),
            QuantizedSha256 = Convert.ToHexStringLower(SHA256.HashData(result.Model)),
            Calibration = new CalibrationInfo { Images = [.. calibration.Select(Path.GetFileName)!], Sha256 = result.CalibrationSha256, Preprocessing = result.Preprocessing },
            Agreement = Math.Round(result.Agreement, 6),
            Gate = QuantizationReport.DefaultGate,
            Passed = passed,
            Forced = !passed,
            ParityImages = [.. result.Images.Select(i => new ImageFigure { Image = i.Image, Pixels = i.Pixels, Agreement = Math.Round(i.Agreement, 6) })],
            QuantizedConvs = result.Convs,
            Cpu = CpuFeatures.Flags,
            CreatedOn = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
        };
        var marInf = new Dictionary<string, byte[]>(spec.MarInfFiles) { [QuantizationReport.FileName] = report.ToJson() };
        return new Int8Step(spec with { ExtraFiles = [.. spec.ExtraFiles, quantizedPath], MarInfFiles = marInf }, folder);
    }

    public void Dispose()
    {
        if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
    }

    private static IReadOnlyList<string> Images(string folder, string flag)
    {
        if (!Directory.Exists(folder)) throw new ArgumentException($"{flag}: folder '{folder}' does not exist");
        var images = Int8Quantization.ImagesIn(folder);
        return images.Count > 0 ? images : throw new ArgumentException($"{flag}: no images ({string.Join(", ", Int8Quantization.ImageExtensions)}) in '{folder}'");
    }

    private static string Percent(double fraction) => (fraction * 100).ToString("F2", CultureInfo.InvariantCulture) + " %";
}
