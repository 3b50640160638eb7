namespace ServeSharp.Archive;

/// <summary>
/// Caps applied while extracting, against zip bombs and archives with absurd entry counts.
/// The byte cap counts bytes actually written, not what the headers claim.
/// </summary>
public sealed record ArchiveLimits
{
    public long MaxTotalBytes { get; init; } = 4L * 1024 * 1024 * 1024;
    public int MaxEntries { get; init; } = 10_000;

    public static ArchiveLimits Default { get; } = new();
}
