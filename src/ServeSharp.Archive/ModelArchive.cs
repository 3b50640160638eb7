using System.Text.Json;

namespace ServeSharp.Archive;

/// <summary>
/// An opened model archive: its manifest, its model-config.yaml and the folder holding its files.
/// Zip and tar.gz archives are extracted into a fresh folder that <see cref="Dispose"/> deletes;
/// a no-archive folder is used where it is and left alone.
/// </summary>
public sealed class ModelArchive : IDisposable
{
    // The extraction folder this instance created and deletes; null for a no-archive folder.
    private string? _extractedTo;

    private ModelArchive(string sourcePath, ArchiveFormat format, string modelDirectory, string? extractedTo, Manifest manifest, ModelConfig config, string? servedModelFile)
    {
        ServedModelFile = servedModelFile;
        SourcePath = sourcePath;
        Format = format;
        ModelDirectory = modelDirectory;
        _extractedTo = extractedTo;
        Manifest = manifest;
        Config = config;
    }

    public string SourcePath { get; }
    public ArchiveFormat Format { get; }

    /// <summary>The folder that holds MAR-INF and the model's files.</summary>
    public string ModelDirectory { get; }

    public Manifest Manifest { get; }
    public ManifestModel Model => Manifest.Model!;
    public string ModelName => Model.ModelName!;
    public string ModelVersion => Model.ModelVersion ?? "1.0";
    public ModelConfig Config { get; }

    /// <summary>
    /// The model file handlers open: the manifest's serializedFile, or with <c>precision: int8</c> / <c>fp16</c> the model
    /// that <see cref="QuantizationReport"/> names.
    /// </summary>
    public string? ServedModelFile { get; }

    /// <summary>Absolute path of a file the manifest names (relative to the model folder).</summary>
    public string PathOf(string relative) => Path.Combine(ModelDirectory, relative);

    /// <summary>
    /// Opens <paramref name="path"/> (a .mar zip, a .tar.gz or a folder). Archives are extracted under
    /// <paramref name="extractionRoot"/> in a folder of their own; on any error that folder is removed.
    /// </summary>
    public static ModelArchive Open(string path, string extractionRoot, ArchiveLimits? limits = null)
    {
        limits ??= ArchiveLimits.Default;
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(path));
        if (!File.Exists(path) && !Directory.Exists(path))
            throw new ArchiveException($"{name}: no such archive file or folder ({path})");

        var format = ArchiveFormats.Detect(path);
        if (format == ArchiveFormat.NoArchive)
            return Load(path, format, Path.GetFullPath(path), extractedTo: null);

        Directory.CreateDirectory(extractionRoot);
        var target = Path.Combine(Path.GetFullPath(extractionRoot), $"{SafeFolderName(name)}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(target);
        try
        {
            if (format == ArchiveFormat.Tgz) SafeExtractor.ExtractTarGz(path, target, limits);
            else SafeExtractor.ExtractZip(path, target, limits);
            return Load(path, format, FindModelRoot(name, target), extractedTo: target);
        }
        catch
        {
            TryDelete(target);
            throw;
        }
    }

    /// <summary>torch-model-archiver's tgz puts everything under one top folder; zips have MAR-INF at the root.</summary>
    private static string FindModelRoot(string name, string extracted)
    {
        if (File.Exists(Path.Combine(extracted, Manifest.RelativePath))) return extracted;
        var dirs = Directory.GetDirectories(extracted);
        if (dirs.Length == 1 && Directory.GetFiles(extracted).Length == 0 && File.Exists(Path.Combine(dirs[0], Manifest.RelativePath)))
            return dirs[0];
        throw new ArchiveException($"{name}: missing {Manifest.RelativePath} (not a model archive)");
    }

    private static ModelArchive Load(string source, ArchiveFormat format, string modelDir, string? extractedTo)
    {
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(source));
        var manifestPath = Path.Combine(modelDir, Manifest.RelativePath);
        if (!File.Exists(manifestPath))
            throw new ArchiveException($"{name}: missing {Manifest.RelativePath} (not a model archive)");

        Manifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize(File.ReadAllBytes(manifestPath), ManifestJsonContext.Default.Manifest);
        }
        catch (JsonException e)
        {
            throw new ArchiveException($"{name}: {Manifest.RelativePath} is not valid JSON ({e.Message})", e);
        }

        if (manifest?.Model is not { } model)
            throw new ArchiveException($"{name}: {Manifest.RelativePath} has no \"model\" object");
        if (string.IsNullOrWhiteSpace(model.ModelName))
            throw new ArchiveException($"{name}: {Manifest.RelativePath} has no model.modelName");
        if (string.IsNullOrWhiteSpace(model.Handler))
            throw new ArchiveException($"{name}: {Manifest.RelativePath} has no model.handler");

        foreach (var (key, file) in new[] { ("serializedFile", model.SerializedFile), ("modelFile", model.ModelFile), ("requirementsFile", model.RequirementsFile), ("configFile", model.ConfigFile) })
        {
            if (file is null) continue;
            string full;
            try
            {
                full = SafeExtractor.ResolveInside(source, modelDir, file);
            }
            catch (ArchiveException e)
            {
                throw new ArchiveException($"{name}: manifest model.{key} is not a path inside the archive: {e.Message}");
            }
            if (!File.Exists(full))
                throw new ArchiveException($"{name}: manifest names model.{key} '{file}', which is not in the archive");
        }

        ModelConfig config;
        try
        {
            config = model.ConfigFile is { } cfg ? ModelConfigReader.Read(Path.Combine(modelDir, cfg)) : ModelConfig.Empty;
        }
        catch (ArchiveException e)
        {
            throw new ArchiveException($"{name}: {e.Message}", e);
        }
        return new ModelArchive(source, format, modelDir, extractedTo, manifest, config, ServedFile(name, source, modelDir, model, config));
    }

    // precision: int8 or fp16 without its model would silently serve fp32: refused, with the command that makes one.
    private static string? ServedFile(string name, string source, string modelDir, ManifestModel model, ModelConfig config)
    {
        var precision = config.Precision;
        if (precision is not (QuantizationReport.Int8Precision or QuantizationReport.Fp16Precision)) return model.SerializedFile;
        QuantizationReport? report;
        try
        {
            report = QuantizationReport.Read(modelDir);
        }
        catch (ArchiveException e)
        {
            throw new ArchiveException($"{name}: {e.Message}", e);
        }
        var advice = precision == QuantizationReport.Int8Precision
            ? "archive it again with servesharp-archiver --config-file model-config.yaml (precision: int8) " +
              "--calibration-samples DIR, which quantizes the model and checks it against fp32, or set precision: fp32"
            : "archive it again with servesharp-archiver --config-file model-config.yaml (precision: fp16) " +
              "--parity-samples DIR, which converts the model and checks it against fp32, or set precision: fp32";
        if (report is null)
            throw new ArchiveException($"{name}: model-config.yaml says precision: {precision}, but the archive has no {precision} model ({QuantizationReport.RelativePath} is missing): {advice}");
        if (report.Precision != precision)
            throw new ArchiveException($"{name}: model-config.yaml says precision: {precision}, but {QuantizationReport.RelativePath} describes a {report.Precision} model: {advice}");
        var full = SafeExtractor.ResolveInside(source, modelDir, report.QuantizedFile);
        if (!File.Exists(full))
            throw new ArchiveException($"{name}: {QuantizationReport.RelativePath} names the {precision} model '{report.QuantizedFile}', which is not in the archive: {advice}");
        return report.QuantizedFile;
    }

    public void Dispose()
    {
        if (_extractedTo is { } dir)
        {
            TryDelete(dir);
            _extractedTo = null;
        }
    }

    private static string SafeFolderName(string name)
    {
        Span<char> chars = stackalloc char[Math.Min(name.Length, 64)];
        for (var i = 0; i < chars.Length; i++) chars[i] = char.IsAsciiLetterOrDigit(name[i]) || name[i] is '-' or '_' or '.' ? name[i] : '_';
        return new string(chars);
    }

    private static void TryDelete(string dir)
    {
        try
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
        catch (IOException)
        {
            // A handler may still hold a file open (a mapped model); the OS temp cleaner gets it later.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
