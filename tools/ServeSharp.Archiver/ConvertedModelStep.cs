using System.Globalization;
using System.Security.Cryptography;
using ServeSharp.Archive;
using ServeSharp.Handlers.Segmentation.Int8;

namespace ServeSharp.Archiver;

/// <summary>
/// What the archive-time precision steps (<see cref="Int8Step"/>, <see cref="Fp16Step"/>) share: the checks on the model
/// they convert, their image folders, the parity gate's figures, and the temporary folder the converted model waits in
/// until the archive is written (this step owns it).
/// </summary>
internal abstract class ConvertedModelStep(ArchiveSpec spec, string folder) : IDisposable
{
    /// <summary>The spec with the converted model and its report added.</summary>
    public ArchiveSpec Spec { get; } = spec;

    public void Dispose()
    {
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
    }

    /// <summary>
    /// The --serialized-file to convert: an existing .onnx model served by image_segmenter, into an archive that may be
    /// written. <paramref name="converts"/> and <paramref name="checkedWith"/> begin the refusals ("precision: int8 quantizes").
    /// </summary>
    protected static string SegmentationModel(ArchiveSpec spec, string converts, string checkedWith)
    {
        if (spec.SerializedFile is not { } model || !model.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) || !File.Exists(model))
            throw new ArgumentException($"{converts} the --serialized-file, which must be an existing .onnx model (got '{spec.SerializedFile}')");
        if (spec.Handler != "image_segmenter")
            throw new ArgumentException($"{checkedWith} image_segmenter's preprocessing; handler '{spec.Handler}' is not image_segmenter");
        var target = ArchiveWriter.TargetPath(spec);
        if ((File.Exists(target) || Directory.Exists(target)) && !spec.Force)
            throw new ArchiveException($"{target} already exists; use -f/--force to overwrite it");
        return model;
    }

    /// <summary>The images in <paramref name="folder"/>, given as <paramref name="flag"/>; at least one.</summary>
    protected static IReadOnlyList<string> Images(string folder, string flag)
    {
        if (!Directory.Exists(folder)) throw new ArgumentException($"{flag}: folder '{folder}' does not exist");
        var images = Int8Quantization.ImagesIn(folder);
        return images.Count > 0 ? images : throw new ArgumentException($"{flag}: no images ({string.Join(", ", Int8Quantization.ImageExtensions)}) in '{folder}'");
    }

    /// <summary>The agreement as the archiver reports it: overall, the worst image, and the gate.</summary>
    protected static string Figures(double agreement, IReadOnlyList<ImageAgreement> images) =>
        Describe(agreement, images, images.MinBy(i => i.Agreement)!);

    private static string Describe(double agreement, IReadOnlyList<ImageAgreement> images, ImageAgreement worst) =>
        $"{Percent(agreement)} of pixels over {images.Count} parity images (worst {worst.Image}: {Percent(worst.Agreement)}), gate {Percent(QuantizationReport.DefaultGate)}";

    /// <summary>
    /// Writes <paramref name="converted"/> as <c>MODEL.SUFFIX.onnx</c> into a new temporary folder and adds it and its
    /// report to the spec: the fields every conversion records, then what <paramref name="specific"/> adds (int8's
    /// calibration, fp16's precision and where it was measured).
    /// </summary>
    protected static (ArchiveSpec Spec, string Folder) Add(ArchiveSpec spec, string model, string suffix, byte[] converted, double agreement,
        IReadOnlyList<ImageAgreement> images, bool passed, int convs, Func<QuantizationReport, QuantizationReport> specific)
    {
        var folder = Directory.CreateTempSubdirectory($"servesharp-{suffix}-").FullName;
        var name = Path.GetFileNameWithoutExtension(model) + $".{suffix}.onnx";
        var path = Path.Combine(folder, name);
        File.WriteAllBytes(path, converted);
        var report = specific(new QuantizationReport
        {
            QuantizedFile = name,
            SourceFile = Path.GetFileName(model),
            SourceSha256 = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(model))),
            QuantizedSha256 = Convert.ToHexStringLower(SHA256.HashData(converted)),
            Agreement = Math.Round(agreement, 6),
            Gate = QuantizationReport.DefaultGate,
            Passed = passed,
            QuantizedConvs = convs,
            ParityImages = [.. images.Select(i => new ImageFigure { Image = i.Image, Pixels = i.Pixels, Agreement = Math.Round(i.Agreement, 6) })],
            Cpu = CpuFeatures.Flags,
            CreatedOn = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
        });
        var marInf = new Dictionary<string, byte[]>(spec.MarInfFiles) { [QuantizationReport.FileName] = report.ToJson() };
        return (spec with { ExtraFiles = [.. spec.ExtraFiles, path], MarInfFiles = marInf }, folder);
    }

    private static string Percent(double fraction) => (fraction * 100).ToString("F2", CultureInfo.InvariantCulture) + " %";
}
