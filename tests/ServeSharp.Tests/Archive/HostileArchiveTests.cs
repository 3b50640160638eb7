using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using ServeSharp.Archive;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Archive;

/// <summary>Archives that try to write outside their folder, blow up, or lie are refused with a clear message, leaving nothing behind.</summary>
public sealed class HostileArchiveTests
{
    private const string GoodManifest = """{"runtime": "python", "model": {"modelName": "m", "handler": "image_segmenter", "modelVersion": "1.0"}}""";

    public static TheoryData<string, string> EscapingEntries => new()
    {
        { "../escaped.txt", "escapes the extraction folder" },
        { "a/../../escaped.txt", "escapes the extraction folder" },
        { "/tmp/servesharp-absolute-escape.txt", "absolute path" },
        { "..\\escaped.txt", "escapes the extraction folder" },
    };

    [Theory]
    [MemberData(nameof(EscapingEntries))]
    public void Zip_entries_that_escape_are_rejected_and_nothing_is_written(string entryName, string expected)
    {
        using var tmp = new TempDir();
        var mar = MakeZip(tmp.File("evil.mar"), ("MAR-INF/MANIFEST.json", GoodManifest), (entryName, "pwned"));
        var root = tmp.Sub("extract");

        var error = Assert.Throws<ArchiveException>(() => ModelArchive.Open(mar, root));
        Assert.Contains("evil.mar", error.Message);
        Assert.Contains(expected, error.Message);
        AssertNothingWritten(tmp, root);
        Assert.False(File.Exists("/tmp/servesharp-absolute-escape.txt"));
    }

    [Fact]
    public void Zip_symlink_entries_are_rejected()
    {
        using var tmp = new TempDir();
        var mar = tmp.File("link.mar");
        using (var zip = ZipFile.Open(mar, ZipArchiveMode.Create))
        {
            Write(zip, "MAR-INF/MANIFEST.json", GoodManifest);
            var link = zip.CreateEntry("model.onnx");
            link.ExternalAttributes = unchecked((int)0xA1FF0000); // S_IFLNK | 0777
            using var s = link.Open();
            s.Write("/etc/passwd"u8);
        }
        var root = tmp.Sub("extract");
        var error = Assert.Throws<ArchiveException>(() => ModelArchive.Open(mar, root));
        Assert.Contains("symbolic link", error.Message);
        AssertNothingWritten(tmp, root);
    }

    [Fact]
    public void Tgz_links_and_escapes_are_rejected()
    {
        using var tmp = new TempDir();
        foreach (var (name, entry) in new[]
        {
            ("link.tar.gz", (TarEntry)new PaxTarEntry(TarEntryType.SymbolicLink, "m/model.onnx") { LinkName = "/etc/passwd" }),
            ("slip.tar.gz", new PaxTarEntry(TarEntryType.RegularFile, "../escaped.txt") { DataStream = new MemoryStream("x"u8.ToArray()) }),
        })
        {
            var path = tmp.File(name);
            using (var file = File.Create(path))
            using (var gz = new GZipStream(file, CompressionLevel.Fastest))
            using (var tar = new TarWriter(gz))
            {
                tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "m/MAR-INF/MANIFEST.json") { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(GoodManifest)) });
                tar.WriteEntry(entry);
            }
            var root = tmp.Sub("extract-" + name);
            var error = Assert.Throws<ArchiveException>(() => ModelArchive.Open(path, root));
            Assert.Contains(name, error.Message);
            AssertNothingWritten(tmp, root);
        }
    }

    [Fact]
    public void Oversized_archives_stop_at_the_byte_cap_whatever_the_headers_say()
    {
        using var tmp = new TempDir();
        var mar = MakeZip(tmp.File("bomb.mar"), ("MAR-INF/MANIFEST.json", GoodManifest), ("zeros.bin", new string('\0', 1_000_000)));
        var root = tmp.Sub("extract");
        var error = Assert.Throws<ArchiveException>(() => ModelArchive.Open(mar, root, new ArchiveLimits { MaxTotalBytes = 100_000 }));
        Assert.Contains("exceeds the limit of 100000 bytes", error.Message);
        AssertNothingWritten(tmp, root);
    }

    [Fact]
    public void Too_many_entries_are_rejected()
    {
        using var tmp = new TempDir();
        var entries = Enumerable.Range(0, 50).Select(i => ($"f{i}.txt", "x")).Prepend(("MAR-INF/MANIFEST.json", GoodManifest)).ToArray();
        var mar = MakeZip(tmp.File("many.mar"), entries);
        var root = tmp.Sub("extract");
        var error = Assert.Throws<ArchiveException>(() => ModelArchive.Open(mar, root, new ArchiveLimits { MaxEntries = 10 }));
        Assert.Contains("exceed the limit of 10", error.Message);
        AssertNothingWritten(tmp, root);
    }

    public static TheoryData<string, (string, string)[], string> BrokenArchives => new()
    {
        { "nomanifest.mar", [("model.onnx", "x")], "missing MAR-INF/MANIFEST.json" },
        { "badjson.mar", [("MAR-INF/MANIFEST.json", "{not json")], "not valid JSON" },
        { "nomodel.mar", [("MAR-INF/MANIFEST.json", """{"runtime": "python"}""")], "no \"model\" object" },
        { "nohandler.mar", [("MAR-INF/MANIFEST.json", """{"model": {"modelName": "m"}}""")], "no model.handler" },
        { "missingfile.mar", [("MAR-INF/MANIFEST.json", """{"model": {"modelName": "m", "handler": "h", "serializedFile": "model.onnx"}}""")], "names model.serializedFile 'model.onnx', which is not in the archive" },
        { "missingconfig.mar", [("MAR-INF/MANIFEST.json", """{"model": {"modelName": "m", "handler": "h", "configFile": "model-config.yaml"}}""")], "model.configFile 'model-config.yaml'" },
        { "badyaml.mar", [("MAR-INF/MANIFEST.json", """{"model": {"modelName": "m", "handler": "h", "configFile": "c.yaml"}}"""), ("c.yaml", "batchSize: [1, 2")], "c.yaml: invalid YAML" },
        { "badvalue.mar", [("MAR-INF/MANIFEST.json", """{"model": {"modelName": "m", "handler": "h", "configFile": "c.yaml"}}"""), ("c.yaml", "batchSize: many")], "'batchSize': 'many' is not an integer" },
    };

    [Theory]
    [MemberData(nameof(BrokenArchives))]
    public void Malformed_archives_name_the_file_and_the_problem(string name, (string, string)[] entries, string expected)
    {
        using var tmp = new TempDir();
        var mar = MakeZip(tmp.File(name), entries);
        var root = tmp.Sub("extract");
        var error = Assert.Throws<ArchiveException>(() => ModelArchive.Open(mar, root));
        Assert.Contains(name.Split('.')[0], error.Message);
        Assert.Contains(expected, error.Message);
        Assert.Empty(Directory.GetFileSystemEntries(root));
    }

    [Fact]
    public void A_file_that_is_not_a_zip_is_reported_as_such()
    {
        using var tmp = new TempDir();
        var mar = tmp.File("garbage.mar");
        File.WriteAllText(mar, "this is not a zip");
        var error = Assert.Throws<ArchiveException>(() => ModelArchive.Open(mar, tmp.Sub("x")));
        Assert.Contains("garbage.mar: not a valid zip archive", error.Message);
    }

    [Fact]
    public void A_missing_archive_is_reported_with_its_path()
    {
        using var tmp = new TempDir();
        var error = Assert.Throws<ArchiveException>(() => ModelArchive.Open(tmp.File("absent.mar"), tmp.Sub("x")));
        Assert.Contains("absent.mar: no such archive", error.Message);
    }

    private static string MakeZip(string path, params (string Name, string Content)[] entries)
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        foreach (var (name, content) in entries) Write(zip, name, content);
        return path;
    }

    private static void Write(ZipArchive zip, string name, string content)
    {
        using var s = zip.CreateEntry(name).Open();
        s.Write(Encoding.UTF8.GetBytes(content));
    }

    /// <summary>The extraction root is empty again and nothing appeared beside the archive.</summary>
    private static void AssertNothingWritten(TempDir tmp, string root)
    {
        Assert.Empty(Directory.GetFileSystemEntries(root));
        Assert.False(File.Exists(tmp.File("escaped.txt")));
        Assert.False(File.Exists(Path.Combine(Path.GetDirectoryName(root)!, "escaped.txt")));
    }
}
