using System.Formats.Tar;
using System.IO.Compression;

namespace ServeSharp.Archive;

/// <summary>
/// Extracts zip and tar.gz archives into an empty folder, refusing anything that could write outside it
/// (<c>../</c>, absolute paths, links) and stopping at the entry and byte caps. The caller deletes the
/// target folder when this throws, so a rejected archive leaves nothing behind.
/// </summary>
internal static class SafeExtractor
{
    // Unix mode bits live in the high 16 bits of a zip entry's external attributes.
    private const int UnixFileTypeMask = 0xF000;
    private const int UnixSymlink = 0xA000;

    public static void ExtractZip(string archivePath, string target, ArchiveLimits limits)
    {
        ZipArchive zip;
        try
        {
            zip = ZipFile.OpenRead(archivePath);
        }
        catch (InvalidDataException e)
        {
            throw new ArchiveException($"{Path.GetFileName(archivePath)}: not a valid zip archive ({e.Message})", e);
        }

        using (zip)
        {
            if (zip.Entries.Count > limits.MaxEntries)
                throw new ArchiveException($"{Path.GetFileName(archivePath)}: {zip.Entries.Count} entries exceed the limit of {limits.MaxEntries}");

            var budget = new ByteBudget(archivePath, limits.MaxTotalBytes);
            foreach (var entry in zip.Entries)
            {
                if (((entry.ExternalAttributes >> 16) & UnixFileTypeMask) == UnixSymlink)
                    throw new ArchiveException($"{Path.GetFileName(archivePath)}: entry '{entry.FullName}' is a symbolic link, which archives may not contain");

                var destination = ResolveInside(archivePath, target, entry.FullName);
                if (entry.FullName.EndsWith('/') || entry.FullName.EndsWith('\\'))
                {
                    Directory.CreateDirectory(destination);
                    continue;
                }

                Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
                using var source = OpenEntry(archivePath, entry);
                using var output = new FileStream(destination, FileMode.CreateNew, FileAccess.Write);
                budget.Copy(source, output, entry.FullName);
            }
        }
    }

    public static void ExtractTarGz(string archivePath, string target, ArchiveLimits limits)
    {
        using var file = File.OpenRead(archivePath);
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        using var reader = new TarReader(gzip);
        var budget = new ByteBudget(archivePath, limits.MaxTotalBytes);
        var count = 0;
        try
        {
            while (reader.GetNextEntry() is { } entry)
            {
                if (++count > limits.MaxEntries)
                    throw new ArchiveException($"{Path.GetFileName(archivePath)}: more than {limits.MaxEntries} entries");

                switch (entry.EntryType)
                {
                    case TarEntryType.Directory:
                        Directory.CreateDirectory(ResolveInside(archivePath, target, entry.Name));
                        break;
                    case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                        var destination = ResolveInside(archivePath, target, entry.Name);
                        Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
                        using (var output = new FileStream(destination, FileMode.CreateNew, FileAccess.Write))
                        {
                            if (entry.DataStream is { } data) budget.Copy(data, output, entry.Name);
                        }
                        break;
                    case TarEntryType.SymbolicLink or TarEntryType.HardLink:
                        throw new ArchiveException($"{Path.GetFileName(archivePath)}: entry '{entry.Name}' is a link, which archives may not contain");
                    default:
                        throw new ArchiveException($"{Path.GetFileName(archivePath)}: entry '{entry.Name}' has unsupported type {entry.EntryType}");
                }
            }
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
        {
            throw new ArchiveException($"{Path.GetFileName(archivePath)}: not a valid tar.gz archive ({e.Message})", e);
        }
    }

    /// <summary>Maps an entry name to a path under <paramref name="target"/>, or throws if it would land elsewhere.</summary>
    internal static string ResolveInside(string archivePath, string target, string entryName)
    {
        var name = Path.GetFileName(archivePath);
        if (entryName.Length == 0 || entryName.Contains('\0'))
            throw new ArchiveException($"{name}: entry with an empty or invalid name");
        if (entryName[0] is '/' or '\\' || (entryName.Length > 1 && entryName[1] == ':'))
            throw new ArchiveException($"{name}: entry '{entryName}' has an absolute path");

        foreach (var segment in entryName.Split('/', '\\'))
        {
            if (segment == "..")
                throw new ArchiveException($"{name}: entry '{entryName}' escapes the extraction folder");
        }

        var root = Path.GetFullPath(target);
        var full = Path.GetFullPath(Path.Combine(root, entryName));
        if (!full.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal) && full != root)
            throw new ArchiveException($"{name}: entry '{entryName}' escapes the extraction folder");
        return full;
    }

    private static Stream OpenEntry(string archivePath, ZipArchiveEntry entry)
    {
        try
        {
            return entry.Open();
        }
        catch (InvalidDataException e)
        {
            throw new ArchiveException($"{Path.GetFileName(archivePath)}: entry '{entry.FullName}' cannot be read ({e.Message})", e);
        }
    }

    /// <summary>Counts decompressed bytes across all entries and stops the copy the moment the cap is passed.</summary>
    private sealed class ByteBudget(string archivePath, long maxBytes)
    {
        private long _written;

        public void Copy(Stream source, Stream destination, string entryName)
        {
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(81920);
            try
            {
                int read;
                while ((read = ReadChunk(source, buffer, entryName)) > 0)
                {
                    _written += read;
                    if (_written > maxBytes)
                        throw new ArchiveException($"{Path.GetFileName(archivePath)}: uncompressed size exceeds the limit of {maxBytes} bytes (at entry '{entryName}')");
                    destination.Write(buffer, 0, read);
                }
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        private int ReadChunk(Stream source, byte[] buffer, string entryName)
        {
            try
            {
                return source.Read(buffer, 0, buffer.Length);
            }
            catch (InvalidDataException e)
            {
                throw new ArchiveException($"{Path.GetFileName(archivePath)}: entry '{entryName}' is corrupt ({e.Message})", e);
            }
        }
    }
}
