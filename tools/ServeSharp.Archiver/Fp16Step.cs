using System.Globalization;
using System.Security.Cryptography;
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
internal sealed class Fp16Step : IDisposable
{
    private const string MeasuredOn = "ONNX Runtime's CPU provider (float16 nodes without a CPU kernel run through Casts to fp32): the float16 weights' and tensors' effect, not CUDA's fp16 arithmetic";

    private readonly string _folder;

    private Fp16Step(ArchiveSpec spec, string folder)
    {
        Spec = spec;
        _folder = folder;
    }

    /// <summary>The spec with the fp16 model and its report added.</summary>
    public ArchiveSpec Spec { get; }

    /// <summary>Null when the config does not ask for fp16.</summary>
    public static Fp16Step? Prepare(ArchiverCommand command, TextWriter log)
    {
        var spec = command.Spec;
        var config = spec.ConfigFile is { } file && File.Exists(file) ? ModelConfigReader.Read(file) : ModelConfig.Empty;
        if (config.Precision != QuantizationReport.Fp16Precision) return null;

        if (command.ParitySamples is not { } parityDir)
            throw new ArgumentException("model-config.yaml says precision: fp16: give --parity-samples DIR, images like the ones the model will serve, to check the fp16 model against fp32");
        if (spec.SerializedFile is not { } model || !model.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) || !File.Exists(model))
            throw new ArgumentException($"precision: fp16 converts the --serialized-file, which must be an existing .onnx model (got '{spec.SerializedFile}')");
        if (spec.Handler != "image_segmenter")
            throw new ArgumentException($"precision: fp16 is checked with image_segmenter's preprocessing; handler '{spec.Handler}' is not image_segmenter");
        var target = ArchiveWriter.TargetPath(spec);
        if ((File.Exists(target) || Directory.Exists(target)) && !spec.Force)
            throw new ArchiveException($"{target} already exists; use -f/--force to overwrite it");

        if (!Directory.Exists(parityDir)) throw new ArgumentException($"--parity-samples: folder '{parityDir}' does not exist");
        var parity = Int8Quantization.ImagesIn(parityDir);
        if (parity.Count == 0) throw new ArgumentException($"--parity-samples: no images ({string.Join(", ", Int8Quantization.ImageExtensions)}) in '{parityDir}'");
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

        var worst = result.Images.MinBy(i => i.Agreement)!;
        var figures = $"{Percent(result.Agreement)} of pixels over {parity.Count} parity images (worst {worst.Image}: {Percent(worst.Agreement)}), gate {Percent(QuantizationReport.DefaultGate)}";
        if (result.Agreement < QuantizationReport.DefaultGate)
            throw new ArchiveException($"fp16 refused: the fp16 model's class maps agree with fp32 on {figures}; nothing was written. Keep precision: fp32.");
        log.WriteLine($"fp16: {result.Convs} Convs in float16; agreement with fp32 {figures} (measured on the CPU provider)");

        var folder = Directory.CreateTempSubdirectory("servesharp-fp16-").FullName;
        var name = Path.GetFileNameWithoutExtension(model) + ".fp16.onnx";
        var path = Path.Combine(folder, name);
        File.WriteAllBytes(path, result.Model);
        var report = new QuantizationReport
        {
            Precision = QuantizationReport.Fp16Precision,
            Format = QuantizationReport.Fp16Format,
            QuantizedFile = name,
            SourceFile = Path.GetFileName(model),
            SourceSha256 = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(model))),
            QuantizedSha256 = Convert.ToHexStringLower(SHA256.HashData(result.Model)),
            Agreement = Math.Round(result.Agreement, 6),
            Gate = QuantizationReport.DefaultGate,
            Passed = true,
            ParityImages = [.. result.Images.Select(i => new ImageFigure { Image = i.Image, Pixels = i.Pixels, Agreement = Math.Round(i.Agreement, 6) })],
            QuantizedConvs = result.Convs,
            MeasuredOn = MeasuredOn,
            Cpu = CpuFeatures.Flags,
            CreatedOn = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
        };
        var marInf = new Dictionary<string, byte[]>(spec.MarInfFiles) { [QuantizationReport.FileName] = report.ToJson() };
        return new Fp16Step(spec with { ExtraFiles = [.. spec.ExtraFiles, path], MarInfFiles = marInf }, folder);
    }

    public void Dispose()
    {
        if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
    }

    private static string Percent(double fraction) => (fraction * 100).ToString("F2", CultureInfo.InvariantCulture) + " %";
}
