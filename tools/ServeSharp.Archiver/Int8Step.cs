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
internal sealed class Int8Step(ArchiveSpec spec, string folder) : ConvertedModelStep(spec, folder)
{
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
        var model = SegmentationModel(spec, "precision: int8 quantizes", "precision: int8 is calibrated with");

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
        var figures = Figures(result.Agreement, result.Images);
        if (!passed && !command.ForceInt8)
            throw new ArchiveException($"int8 refused: the quantized model's class maps agree with fp32 on {figures}; nothing was written. " +
                "Calibrate on images like the ones the model will serve, keep precision: fp32, or pass --force-int8 to write it anyway.");
        log.WriteLine($"int8: {result.Convs} Convs quantized; agreement with fp32 {figures}{(passed ? "" : " — below the gate, written because of --force-int8")}");

        var (withModel, folder) = Add(spec, model, "int8", result.Model, result.Agreement, result.Images, passed, result.Convs, report => report with
        {
            Calibration = new CalibrationInfo { Images = [.. calibration.Select(Path.GetFileName)!], Sha256 = result.CalibrationSha256, Preprocessing = result.Preprocessing },
            Forced = !passed,
        });
        return new Int8Step(withModel, folder);
    }
}
