using System.Text.Json;
using ServeSharp.Archive;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Archive;

/// <summary>The archiver CLI writes what the loader reads, in all three formats; archives made by Python load too.</summary>
public sealed class ArchiveRoundTripTests
{
    [Theory]
    [InlineData("default", "roundtrip.mar")]
    [InlineData("zip-store", "roundtrip.mar")]
    [InlineData("no-archive", "roundtrip")]
    [InlineData("tgz", "roundtrip.tar.gz")]
    public void Archiver_output_loads_with_every_file_and_setting(string format, string expectedName)
    {
        using var tmp = new TempDir();
        var config = tmp.File("model-config.yaml");
        File.WriteAllText(config, "batchSize: 4\nmaxBatchDelay: 50\nhandler:\n  mode: torchvision\n  scales: [0.5, 1.0]\n");
        var names = tmp.File("index_to_name.json");
        File.WriteAllText(names, """{"0": "background", "1": "cat"}""");
        var extraDir = tmp.Sub("assets");
        File.WriteAllText(Path.Combine(extraDir, "palette.txt"), "0 0 0\n");
        var requirements = tmp.File("requirements.txt");
        File.WriteAllText(requirements, "numpy\n");
        var export = tmp.Sub("export");

        var (code, output) = Repo.Archiver(
            "--model-name", "roundtrip", "--version", "2.5", "--serialized-file", TestModels.Tiny,
            "--handler", "image_segmenter", "--extra-files", $"{names},{extraDir}", "-c", config,
            "-r", requirements, "--export-path", export, "--archive-format", format, "--runtime", "python3");
        Assert.True(code == 0, output);
        var written = Path.Combine(export, expectedName);
        Assert.Equal(Path.GetFullPath(written), output.Trim());

        if (format == "zip-store")
        {
            using var zip = System.IO.Compression.ZipFile.OpenRead(written);
            Assert.All(zip.Entries.Where(e => e.Length > 0), e => Assert.Equal(e.Length, e.CompressedLength)); // stored, not deflated
        }
        using var archive = ModelArchive.Open(written, tmp.Sub("extract"));
        Assert.Equal(format == "zip-store" ? ArchiveFormat.Default : ArchiveFormats.Parse(format), archive.Format);
        Assert.Equal("roundtrip", archive.ModelName);
        Assert.Equal("2.5", archive.ModelVersion);
        Assert.Equal("image_segmenter", archive.Model.Handler);
        Assert.Equal("python3", archive.Manifest.Runtime);
        Assert.Equal("tiny.onnx", archive.Model.SerializedFile);
        Assert.Equal("requirements.txt", archive.Model.RequirementsFile);
        Assert.True(DateTime.TryParseExact(archive.Manifest.CreatedOn, Manifest.DateFormat, null, System.Globalization.DateTimeStyles.None, out _), archive.Manifest.CreatedOn);
        Assert.Equal(File.ReadAllBytes(TestModels.Tiny), File.ReadAllBytes(archive.PathOf("tiny.onnx")));
        Assert.True(File.Exists(archive.PathOf("index_to_name.json")));
        Assert.True(File.Exists(archive.PathOf("assets/palette.txt")));
        Assert.Equal(4, archive.Config.BatchSize);
        Assert.Equal(50, archive.Config.MaxBatchDelay);
        Assert.Equal("torchvision", archive.Config.Handler.GetString("mode"));
        Assert.Equal([0.5, 1.0], archive.Config.Handler.GetDoubleList("scales"));
    }

    [Fact]
    public void Extracted_folder_is_removed_on_dispose_but_a_no_archive_folder_is_kept()
    {
        using var tmp = new TempDir();
        var mar = ArchiveWriter.Write(new ArchiveSpec { ModelName = "m", Handler = "image_segmenter", SerializedFile = TestModels.Tiny, ExportPath = tmp.Path });
        var folder = ArchiveWriter.Write(new ArchiveSpec { ModelName = "f", Handler = "image_segmenter", SerializedFile = TestModels.Tiny, ExportPath = tmp.Path, Format = ArchiveFormat.NoArchive });

        string extracted;
        using (var archive = ModelArchive.Open(mar, tmp.Sub("x"))) extracted = archive.ModelDirectory;
        Assert.False(Directory.Exists(extracted));

        using (ModelArchive.Open(folder, tmp.Sub("y"))) { }
        Assert.True(File.Exists(Path.Combine(folder, "MAR-INF", "MANIFEST.json")));
    }

    [Fact]
    public void Manifest_written_has_torch_model_archivers_keys_only()
    {
        using var tmp = new TempDir();
        var folder = ArchiveWriter.Write(new ArchiveSpec { ModelName = "k", Handler = "image_segmenter", SerializedFile = TestModels.Tiny, ExportPath = tmp.Path, Format = ArchiveFormat.NoArchive });
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "MAR-INF", "MANIFEST.json")));
        Assert.Equal(["createdOn", "runtime", "model", "archiverVersion"], doc.RootElement.EnumerateObject().Select(p => p.Name));
        Assert.Equal(["modelName", "serializedFile", "handler", "modelVersion"], doc.RootElement.GetProperty("model").EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public void Zip_written_by_pythons_zipfile_with_torch_model_archivers_manifest_loads()
    {
        using var tmp = new TempDir();
        var mar = tmp.File("tsmodel.mar");
        // The manifest text exactly as torch-model-archiver 0.12 writes it (indent 2, runtime "python").
        const string script = """
            import sys, zipfile
            manifest = '''{
              "createdOn": "17/06/2025 10:21:44",
              "runtime": "python",
              "model": {
                "modelName": "tsmodel",
                "serializedFile": "tiny.onnx",
                "handler": "image_segmenter",
                "modelVersion": "1.0",
                "configFile": "model-config.yaml"
              },
              "archiverVersion": "0.12.0"
            }'''
            with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr("MAR-INF/MANIFEST.json", manifest)
                z.write(sys.argv[2], "tiny.onnx")
                z.writestr("model-config.yaml", "minWorkers: 1\nmaxWorkers: 2\nresponseTimeout: 120\n")
                z.writestr("index_to_name.json", '{"0": "background"}')
            """;
        var (code, output) = Repo.Run(Repo.Python, ["-c", script, mar, TestModels.Tiny]);
        Assert.True(code == 0, output);

        using var archive = ModelArchive.Open(mar, tmp.Sub("x"));
        Assert.Equal("tsmodel", archive.ModelName);
        Assert.Equal("17/06/2025 10:21:44", archive.Manifest.CreatedOn);
        Assert.Equal("0.12.0", archive.Manifest.ArchiverVersion);
        Assert.Equal(1, archive.Config.MinWorkers);
        Assert.Equal(2, archive.Config.MaxWorkers);
        Assert.Equal(120, archive.Config.ResponseTimeout);
        Assert.True(File.Exists(archive.PathOf("index_to_name.json")));
    }
}
