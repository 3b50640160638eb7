using System.Globalization;
using ServeSharp.Archive;
using ServeSharp.Server.Cli;

namespace ServeSharp.Server.Conversion;

/// <summary>
/// The archive a conversion writes: its report, the archive staged in the work folder with the archiver (the source's
/// files, model.onnx in place of the weights, the handler or its C# skeleton, MAR-INF/conversion.json), and the move
/// that puts it in place whole.
/// </summary>
internal static class ConvertedArchive
{
    /// <summary>What the conversion did and measured, as conversion.json and the command's output say it.</summary>
    public static ConversionReport Report(ModelArchive archive, ConvertOptions options, string source, PythonInfo python, TorchResult result,
        ReportParity parity, Skeleton? skeleton, string sha256, (int Height, int Width) size)
    {
        var model = archive.Model;
        var output = result.Model!.Output;
        var exportedFrom = output?.Type switch
        {
            "dict" => $"the model's '{output.Exported}' of {{{string.Join(", ", output.Keys ?? [])}}}",
            "tuple" => $"the first of the model's {output.Length} outputs",
            _ => "the model's output",
        };
        var handler = skeleton is null
            ? new ReportHandler(model.Handler!, TorchServeArchive.ImageSegmenter, "ServeSharp's built-in, which answers TorchServe's image_segmenter JSON by default")
            : new ReportHandler(model.Handler!, skeleton.FileName, skeleton.ServesAsIs
                ? $"a C# skeleton of {skeleton.ClassName} (ServeSharp.Sdk.BaseHandler): it serves as image_segmenter until " +
                  (skeleton.NotPorted.Count == 0 ? "you change it" : $"you port {string.Join(", ", skeleton.NotPorted)} from the Python")
                : $"a C# skeleton of {skeleton.ClassName} (ServeSharp.Sdk.BaseHandler): preprocess and postprocess answer 501 until you port them from the Python");
        var dropped = new List<string>();
        if (model.ModelFile is { } modelFile) dropped.Add($"{modelFile}: the model is {ArchiveConverter.OnnxFile} now");
        dropped.Add($"{model.SerializedFile}: replaced by {ArchiveConverter.OnnxFile}");
        if (model.RequirementsFile is { } requirements) dropped.Add($"{requirements}: Python packages, which ServeSharp does not install");
        return new ConversionReport
        {
            Converter = $"servesharp convert {CommandLine.ProductVersion}",
            CreatedOn = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            Source = new ReportSource(source, sha256, archive.ModelName, archive.ModelVersion, result.Model.Kind, model.SerializedFile, model.ModelFile,
                result.Model.Class, model.Handler!),
            Torch = new ReportTorch(python.Executable, result.Python ?? python.Version, result.Torch ?? python.Torch, result.Torchvision),
            Onnx = new ReportOnnx(ArchiveConverter.OnnxFile, result.Export!.Opset, "input", "out", exportedFrom, options.Dynamic, $"{size.Height}x{size.Width}", options.Fp16),
            Parity = parity,
            Handler = handler,
            Dropped = dropped,
        };
    }

    /// <summary>Writes the converted archive into the work folder with the archiver and returns its path.</summary>
    public static string Stage(ModelArchive archive, ConversionReport report, string onnxPath, Skeleton? skeleton, string work, string name)
    {
        var model = archive.Model;
        // The archiver copies extras after the serialized file and the handler: nothing may share their names.
        var leftOut = new HashSet<string>(StringComparer.Ordinal) { "MAR-INF", model.SerializedFile!, model.ConfigFile ?? "", ArchiveConverter.OnnxFile, skeleton?.FileName ?? "" };
        if (model.ModelFile is { } modelFile) leftOut.Add(modelFile);
        if (model.RequirementsFile is { } requirements) leftOut.Add(requirements);
        var extras = Directory.EnumerateFileSystemEntries(archive.ModelDirectory)
            .Where(path => !leftOut.Contains(Path.GetFileName(path))).Order(StringComparer.Ordinal).ToList();

        var handler = model.Handler!;
        if (skeleton is not null)
        {
            handler = Path.Combine(Directory.CreateDirectory(Path.Combine(work, "handler")).FullName, skeleton.FileName);
            File.WriteAllText(handler, skeleton.Source);
        }
        var output = Directory.CreateDirectory(Path.Combine(work, "out")).FullName;
        try
        {
            return ArchiveWriter.Write(new ArchiveSpec
            {
                ModelName = name,
                Version = archive.ModelVersion,
                SerializedFile = onnxPath,
                Handler = handler,
                ConfigFile = model.ConfigFile is { } config ? archive.PathOf(config) : null,
                ExtraFiles = extras,
                ExportPath = output,
                Runtime = archive.Manifest.Runtime is { } runtime && ArchiveSpec.Runtimes.Contains(runtime) ? runtime : "python",
                MarInfFiles = new Dictionary<string, byte[]>
                {
                    [ConversionReport.FileName] = report.ToJson(),
                },
            });
        }
        catch (ArchiveException e)
        {
            throw new ConversionException(e.Message, e);
        }
    }

    /// <summary>Moves the finished archive into place: next to the target first, then renamed over it, so a reader never sees half of it.</summary>
    public static void Publish(string staged, string target, bool force)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        var partial = Path.Combine(Path.GetDirectoryName(target)!, $".{Path.GetFileName(target)}.partial-{Guid.NewGuid():N}");
        try
        {
            File.Move(staged, partial);
            File.Move(partial, target, overwrite: force);
        }
        catch (IOException e) when (File.Exists(target) && !force)
        {
            throw new ConversionException($"{target} appeared while converting; use --force to overwrite it", e);
        }
        finally
        {
            if (File.Exists(partial)) File.Delete(partial);
        }
    }
}
