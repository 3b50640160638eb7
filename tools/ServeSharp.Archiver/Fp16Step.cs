using Microsoft.ML.OnnxRuntime;
using ServeSharp.Archive;
using ServeSharp.Handlers.Segmentation.Fp16;
using ServeSharp.Handlers.Segmentation.Int8;

namespace ServeSharp.Archiver;

/// <summary>
/// <c>precision: fp16</c> at archive time, beside int8's step and shaped like it: converts the serialized model to fp16,
/// holds it to the same parity gate on --parity-samples, and adds the fp16 model and MAR-INF/quantization.json to the
/// archive. Below the gate it throws and nothing is written (there is no forcing). The agreement is measured on ONNX
/// Runtime's CPU provider, which runs the fp16 graph through Casts to fp32 where it has no float16 kernel; the report
/// says so. Owns the temporary folder the fp16 model waits in until the archive is written.
/// </summary>
internal sealed class Fp16Step(ArchiveSpec spec, string folder) : ConvertedModelStep(spec, folder)
{
    private const string MeasuredOn = "ONNX Runtime's CPU provider (float16 nodes without a CPU kernel run through Casts to fp32): the float16 weights' and tensors' effect, not CUDA's fp16 arithmetic";

    /// <summary>Null when the config does not ask for fp16.</summary>
    public static Fp16Step? Prepare(ArchiverCommand command, TextWriter log)
    {
        var spec = command.Spec;
        var config = spec.ConfigFile is { } file && File.Exists(file) ? ModelConfigReader.Read(file) : ModelConfig.Empty;
        if (config.Precision != QuantizationReport.Fp16Precision) return null;

        if (command.ParitySamples is not { } parityDir)
            throw new ArgumentException("model-config.yaml says precision: fp16: give --parity-samples DIR, images like the ones the model will serve, to check the fp16 model against fp32");
        var model = SegmentationModel(spec, "precision: fp16 converts", "precision: fp16 is checked with");
        var parity = Images(parityDir, "--parity-samples");
        log.WriteLine($"fp16: converting {Path.GetFileName(model)}, measuring agreement with fp32 on {parity.Count} images");

        Fp16Result result;
        try
        {
            result = Fp16Conversion.Convert(model, config.Handler, parity, Environment.ProcessorCount);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ArchiveException($"fp16: ONNX Runtime failed on {Path.GetFileName(model)}: {e.Message}", e);
        }

        var figures = Figures(result.Agreement, result.Images);
        if (result.Agreement < QuantizationReport.DefaultGate)
            throw new ArchiveException($"fp16 refused: the fp16 model's class maps agree with fp32 on {figures}; nothing was written. Keep precision: fp32.");
        log.WriteLine($"fp16: {result.Convs} Convs in float16; agreement with fp32 {figures} (measured on the CPU provider)");

        var (withModel, folder) = Add(spec, model, "fp16", result.Model, result.Agreement, result.Images, passed: true, result.Convs, report => report with
        {
            Precision = QuantizationReport.Fp16Precision,
            Format = QuantizationReport.Fp16Format,
            MeasuredOn = MeasuredOn,
        });
        return new Fp16Step(withModel, folder);
    }
}
