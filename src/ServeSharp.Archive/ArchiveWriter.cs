using System.Formats.Tar;
using System.Globalization;
using System.IO.Compression;
using System.Text.Json;

namespace ServeSharp.Archive;

/// <summary>What to put in an archive: torch-model-archiver's command-line flags, as a record.</summary>
public sealed record ArchiveSpec
{
    public required string ModelName { get; init; }
    public string Version { get; init; } = "1.0";
    public string? SerializedFile { get; init; }
    public required string Handler { get; init; }
    public string? ModelFile { get; init; }
    public IReadOnlyList<string> ExtraFiles { get; init; } = [];
    public string? ConfigFile { get; init; }
    public string? RequirementsFile { get; init; }
    public string ExportPath { get; init; } = ".";
    public ArchiveFormat Format { get; init; } = ArchiveFormat.Default;
    public bool Force { get; init; }

    /// <summary>The manifest's <c>runtime</c>: torch-model-archiver's choices (python, python3, LSP), recorded as given.</summary>
    public string Runtime { get; init; } = "python";

    public static readonly IReadOnlyList<string> Runtimes = ["python", "python3", "LSP"];

    /// <summary>Files written into MAR-INF beside MANIFEST.json, by file name (servesharp convert's conversion.json).</summary>
    public IReadOnlyDictionary<string, byte[]> MarInfFiles { get; init; } = new Dictionary<string, byte[]>();
}

/// <summary>
/// Writes archives TorchServe could read: the same manifest keys, the files at the archive root,
/// <c>{name}.mar</c> / <c>{name}.tar.gz</c> (one top folder) / <c>{name}/</c>.
/// </summary>
public static class ArchiveWriter
{
    public const string ArchiverVersion = "0.1.0";

    /// <summary>Where <paramref name="spec"/> would be written.</summary>
    public static string TargetPath(ArchiveSpec spec) => Path.GetFullPath(Path.Combine(spec.ExportPath, spec.Format switch
    {
        ArchiveFormat.Tgz => spec.ModelName + ".tar.gz",
        ArchiveFormat.NoArchive => spec.ModelName,
        _ => spec.ModelName + ".mar",
    }));

    /// <summary>Writes the archive and returns its path. Missing inputs and an existing target without Force are errors.</summary>
    public static string Write(ArchiveSpec spec)
    {
        if (string.IsNullOrWhiteSpace(spec.ModelName) || spec.ModelName.IndexOfAny(['/', '\\']) >= 0 || spec.ModelName is "." or "..")
            throw new ArchiveException($"model name '{spec.ModelName}' is not a valid file name");
        if (!ArchiveSpec.Runtimes.Contains(spec.Runtime))
            throw new ArchiveException($"--runtime '{spec.Runtime}' is not one of torch-model-archiver's: {string.Join(", ", ArchiveSpec.Runtimes)}");
        if (!Directory.Exists(spec.ExportPath))
            throw new ArchiveException($"export path '{spec.ExportPath}' does not exist");

        var target = TargetPath(spec);
        if ((File.Exists(target) || Directory.Exists(target)) && !spec.Force)
            throw new ArchiveException($"{target} already exists; use -f/--force to overwrite it");

        var staging = Path.Combine(Path.GetTempPath(), $"servesharp-archive-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path.Combine(staging, "MAR-INF"));
        try
        {
            var model = new ManifestModel
            {
                ModelName = spec.ModelName,
                ModelVersion = spec.Version,
                SerializedFile = CopyInput(staging, spec.SerializedFile, "--serialized-file"),
                ModelFile = CopyInput(staging, spec.ModelFile, "--model-file"),
                ConfigFile = CopyInput(staging, spec.ConfigFile, "--config-file"),
                RequirementsFile = CopyInput(staging, spec.RequirementsFile, "--requirements-file"),
                Handler = CopyHandler(staging, spec.Handler),
            };
            foreach (var extra in spec.ExtraFiles) CopyExtra(staging, extra);

            var manifest = new Manifest
            {
                CreatedOn = DateTime.Now.ToString(Manifest.DateFormat, CultureInfo.InvariantCulture),
                Runtime = spec.Runtime,
                Model = model,
                ArchiverVersion = ArchiverVersion,
            };
            File.WriteAllBytes(Path.Combine(staging, Manifest.RelativePath), JsonSerializer.SerializeToUtf8Bytes(manifest, ManifestJsonContext.Default.Manifest));
            foreach (var (file, content) in spec.MarInfFiles)
            {
                if (file.IndexOfAny(['/', '\\']) >= 0 || file is "." or ".." or "MANIFEST.json")
                    throw new ArchiveException($"MAR-INF/{file} is not a file name the archiver can add");
                File.WriteAllBytes(Path.Combine(staging, "MAR-INF", file), content);
            }

            Remove(target);
            switch (spec.Format)
            {
                case ArchiveFormat.NoArchive:
                    CopyDirectory(staging, target);
                    break;
                case ArchiveFormat.Tgz:
                    WriteTarGz(staging, target, spec.ModelName);
                    break;
                case ArchiveFormat.ZipStore:
                    ZipFile.CreateFromDirectory(staging, target, CompressionLevel.NoCompression, includeBaseDirectory: false);
                    break;
                default:
                    ZipFile.CreateFromDirectory(staging, target, CompressionLevel.Optimal, includeBaseDirectory: false);
                    break;
            }
            return target;
        }
        finally
        {
            Directory.Delete(staging, recursive: true);
        }
    }

    private static string? CopyInput(string staging, string? path, string flag)
    {
        if (path is null) return null;
        if (!File.Exists(path)) throw new ArchiveException($"{flag}: file '{path}' does not exist");
        var name = Path.GetFileName(path);
        File.Copy(path, Path.Combine(staging, name), overwrite: true);
        return name;
    }

    /// <summary>A handler is a built-in name, or a file (optionally "file:Entry") that is copied in and named by its file name.</summary>
    private static string CopyHandler(string staging, string handler)
    {
        var (file, entry) = SplitHandler(handler);
        if (!LooksLikeFile(file)) return handler;
        if (!File.Exists(file)) throw new ArchiveException($"--handler: file '{file}' does not exist");
        var name = Path.GetFileName(file);
        File.Copy(file, Path.Combine(staging, name), overwrite: true);
        return entry is null ? name : $"{name}:{entry}";
    }

    /// <summary>Splits "path/file.cs:Ns.Class" at the last colon that follows the file extension.</summary>
    public static (string File, string? Entry) SplitHandler(string handler)
    {
        var colon = handler.LastIndexOf(':');
        if (colon > 0 && LooksLikeFile(handler[..colon])) return (handler[..colon], handler[(colon + 1)..]);
        return (handler, null);
    }

    private static bool LooksLikeFile(string s) =>
        s.EndsWith(".cs", StringComparison.Ordinal) || s.EndsWith(".dll", StringComparison.Ordinal) || s.EndsWith(".py", StringComparison.Ordinal)
        || s.Contains('/') || File.Exists(s);

    private static void CopyExtra(string staging, string path)
    {
        if (File.Exists(path)) File.Copy(path, Path.Combine(staging, Path.GetFileName(path)), overwrite: true);
        else if (Directory.Exists(path)) CopyDirectory(path, Path.Combine(staging, Path.GetFileName(Path.TrimEndingDirectorySeparator(path))));
        else throw new ArchiveException($"--extra-files: '{path}' does not exist");
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var destination = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            File.Copy(file, destination, overwrite: true);
        }
    }

    private static void WriteTarGz(string staging, string target, string topFolder)
    {
        using var file = File.Create(target);
        using var gzip = new GZipStream(file, CompressionLevel.Optimal);
        using var tar = new TarWriter(gzip, TarEntryFormat.Pax);
        tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, topFolder + "/"));
        foreach (var path in Directory.EnumerateFileSystemEntries(staging, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var name = topFolder + "/" + Path.GetRelativePath(staging, path).Replace('\\', '/');
            if (Directory.Exists(path)) tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, name + "/"));
            else tar.WriteEntry(path, name);
        }
    }

    private static void Remove(string target)
    {
        if (File.Exists(target)) File.Delete(target);
        else if (Directory.Exists(target)) Directory.Delete(target, recursive: true);
    }
}
