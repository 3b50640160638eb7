namespace ServeSharp.Archive;

/// <summary>torch-model-archiver's <c>--archive-format</c> values.</summary>
public enum ArchiveFormat
{
    /// <summary>A zip with the <c>.mar</c> extension.</summary>
    Default,
    /// <summary>A <c>.mar</c> zip whose entries are stored, not compressed (quicker to open for large, incompressible weights).</summary>
    ZipStore,
    /// <summary>A plain folder holding <c>MAR-INF/</c> and the model files.</summary>
    NoArchive,
    /// <summary>A gzip-compressed tar (<c>.tar.gz</c>) whose single top folder holds <c>MAR-INF/</c>.</summary>
    Tgz,
}

public static class ArchiveFormats
{
    public static ArchiveFormat Parse(string value) => value switch
    {
        "default" => ArchiveFormat.Default,
        "zip-store" => ArchiveFormat.ZipStore,
        "no-archive" => ArchiveFormat.NoArchive,
        "tgz" => ArchiveFormat.Tgz,
        _ => throw new ArgumentException($"unknown archive format '{value}' (expected default, zip-store, no-archive or tgz)"),
    };

    /// <summary>Recognises the format from the path: a folder, a <c>.tar.gz</c>/<c>.tgz</c>, anything else is a zip.</summary>
    public static ArchiveFormat Detect(string path) =>
        Directory.Exists(path) ? ArchiveFormat.NoArchive
        : path.EndsWith(".tar.gz", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".tgz", StringComparison.OrdinalIgnoreCase) ? ArchiveFormat.Tgz
        : ArchiveFormat.Default;
}
