using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Archive;

/// <summary>The servesharp-archiver command's errors: missing inputs and an existing target without -f.</summary>
public sealed class ArchiverCliTests
{
    [Fact]
    public void Existing_target_needs_force()
    {
        using var tmp = new TempDir();
        string[] args = ["--model-name", "dup", "--handler", "image_segmenter", "--serialized-file", TestModels.Tiny, "--export-path", tmp.Path];
        Assert.Equal(0, Repo.Archiver(args).ExitCode);

        var (code, output) = Repo.Archiver(args);
        Assert.Equal(1, code);
        Assert.Contains("dup.mar already exists; use -f/--force", output);

        var forced = Repo.Archiver([.. args, "-f"]);
        Assert.True(forced.ExitCode == 0, forced.Output);
    }

    [Theory]
    [InlineData(new[] { "--handler", "image_segmenter" }, "--model-name is required")]
    [InlineData(new[] { "--model-name", "m" }, "--handler is required")]
    [InlineData(new[] { "--model-name", "m", "--handler", "image_segmenter", "--calibration-samples", "/tmp" }, "--calibration-samples and --force-int8 are for precision: int8")]
    [InlineData(new[] { "--model-name", "m", "--handler", "image_segmenter", "--parity-samples", "/tmp" }, "--parity-samples is for precision: int8 or fp16")]
    [InlineData(new[] { "--model-name", "m", "--handler", "image_segmenter", "--serialized-file", "/nonexistent/model.onnx" }, "--serialized-file: file '/nonexistent/model.onnx' does not exist")]
    [InlineData(new[] { "--model-name", "m", "--handler", "missing_handler.cs" }, "--handler: file 'missing_handler.cs' does not exist")]
    [InlineData(new[] { "--model-name", "m", "--handler", "h", "--extra-files", "/nonexistent/a.json" }, "--extra-files: '/nonexistent/a.json' does not exist")]
    [InlineData(new[] { "--model-name", "m", "--handler", "h", "--archive-format", "rar" }, "unknown archive format 'rar'")]
    [InlineData(new[] { "--model-name", "m", "--handler", "h", "--export-path", "/nonexistent/dir" }, "export path '/nonexistent/dir' does not exist")]
    [InlineData(new[] { "--model-name", "m", "--handler", "h", "--bogus", "1" }, "unknown argument '--bogus'")]
    [InlineData(new[] { "--model-name", "m", "--handler", "h", "--runtime", "python4" }, "--runtime 'python4' is not one of torch-model-archiver's: python, python3, LSP")]
    public void Bad_arguments_are_clear_errors(string[] args, string expected)
    {
        using var tmp = new TempDir();
        var (code, output) = Repo.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "servesharp-archiver.dll"), .. args], workingDirectory: tmp.Path);
        Assert.Equal(1, code);
        Assert.Contains(expected, output);
        Assert.Empty(Directory.GetFiles(tmp.Path));
    }
}
