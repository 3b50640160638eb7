using System.Security.Cryptography;
using ServeSharp.Archive;

namespace ServeSharp.Server.Conversion;

/// <summary>A conversion's outcome: where the archive went (null when it was not written) and the report.</summary>
internal sealed record ConversionResult(string Target, bool Written, ConversionReport Report);

/// <summary>
/// <c>servesharp convert</c>: a TorchServe archive (eager model.py + state dict, or TorchScript .pt) in, an ONNX
/// archive out — the same manifest (name, version, handler), model-config.yaml and extra files, the serialized file
/// replaced by model.onnx, and MAR-INF/conversion.json. The torch side (the user's Python) loads and exports the model
/// and answers the parity inputs; this side opens and writes archives, runs ONNX Runtime on the same inputs and
/// gates on pixel agreement. Nothing is written unless everything passed (or --force), and then all at once.
/// </summary>
internal static class ArchiveConverter
{
    public const string OnnxFile = "model.onnx";

    /// <summary>Converts; a refusal is a <see cref="ConversionException"/> whose message says why (and what to do).</summary>
    /// <param name="progress">Told what is happening, a line at a time (the command prints it; the server logs it).</param>
    /// <param name="timeout">How long the torch side may take (null: until cancelled).</param>
    public static async Task<ConversionResult> ConvertAsync(ConvertOptions options, Action<string> progress, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        Validate(options);
        var work = Directory.CreateTempSubdirectory("servesharp-convert-").FullName;
        try
        {
            ModelArchive archive;
            try
            {
                archive = ModelArchive.Open(options.Source, Path.Combine(work, "source"));
            }
            catch (ArchiveException e)
            {
                throw new ConversionException(e.Message, e);
            }
            using (archive)
            {
                return await ConvertAsync(archive, options, work, progress, timeout, cancellationToken);
            }
        }
        finally
        {
            TryDelete(work);
        }
    }

    private static async Task<ConversionResult> ConvertAsync(ModelArchive archive, ConvertOptions options, string work, Action<string> progress,
        TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var source = Path.GetFileName(Path.TrimEndingDirectorySeparator(options.Source));
        var model = archive.Model;
        var kind = TorchServeArchive.KindOf(model);
        switch (kind)
        {
            case TorchModelKind.Onnx:
                throw new ConversionException($"{source} is already an ONNX archive (serializedFile {model.SerializedFile}): ServeSharp serves it as it is");
            case TorchModelKind.Other:
                throw new ConversionException($"{source}: serializedFile '{model.SerializedFile ?? "(none)"}' without a model file is neither an eager " +
                    "model (TorchServe needs --model-file with a state dict) nor TorchScript (.pt); convert handles those two");
        }
        var handler = model.Handler!;
        var pythonHandler = TorchServeArchive.PythonHandlerFile(handler);
        if (handler != TorchServeArchive.ImageSegmenter && pythonHandler is null)
            throw new ConversionException($"{source}: handler '{handler}' is a TorchServe built-in ServeSharp has no counterpart for; ServeSharp serves " +
                $"segmentation with {TorchServeArchive.ImageSegmenter}, and convert handles archives with that handler or with a handler .py of their own");

        var name = options.ModelName ?? archive.ModelName;
        var target = TargetPath(options.ExportPath, name);
        if (string.Equals(target, Path.GetFullPath(options.Source), StringComparison.Ordinal))
            throw new ConversionException($"{target} is the source archive: choose another --export-path or --model-name");
        if (File.Exists(target) && !options.Force)
            throw new ConversionException($"{target} already exists; use --force to overwrite it");
        var size = options.InputSize ?? ConvertOptions.DefaultInputSize;
        if (!options.Dynamic && handler == TorchServeArchive.ImageSegmenter) CheckFixedSize(archive, size);

        var script = TorchPython.WriteScript(work);
        var python = await TorchPython.LocateAsync(options.Python, script, cancellationToken);
        if (options.Fp16 && python.Onnx is null)
            throw new ConversionException($"--fp16 rewrites the exported model with the onnx package, which {python.Executable} does not have (pip install onnx)");
        progress($"converting {source} ({kind.ToString().ToLowerInvariant()}) with torch {python.Torch} in {python.Executable}");

        var torchWork = Directory.CreateDirectory(Path.Combine(work, "torch")).FullName;
        var onnxPath = Path.Combine(torchWork, OnnxFile);
        var result = await TorchSide.ConvertAsync(python, script, new TorchRequest
        {
            ModelDir = archive.ModelDirectory,
            SerializedFile = model.SerializedFile,
            ModelFile = model.ModelFile,
            Handler = new TorchHandler(pythonHandler is null ? handler : null, pythonHandler is null ? null : handler),
            Onnx = onnxPath,
            Opset = options.Opset,
            InputSize = [size.Height, size.Width],
            Dynamic = options.Dynamic,
            Fp16 = options.Fp16,
            Samples = options.Samples is null ? null : Path.GetFullPath(options.Samples),
            SampleCount = options.SampleCount,
            Work = torchWork,
        }, timeout, cancellationToken);

        progress("measuring parity: the ONNX model in ONNX Runtime against torch, on the same inputs");
        var samples = ParityCheck.Run(onnxPath, torchWork, result.Samples, cancellationToken);
        var parity = ReportParity.From(samples, options);

        Skeleton? skeleton = null;
        if (pythonHandler is not null)
        {
            var files = Directory.EnumerateFileSystemEntries(archive.ModelDirectory).Select(Path.GetFileName).OfType<string>().ToHashSet(StringComparer.Ordinal);
            skeleton = HandlerSkeleton.Write(result.Handler ?? throw new ConversionException($"the torch side did not describe {pythonHandler}"), size, files);
        }

        var report = ConvertedArchive.Report(archive, options, source, python, result, parity, skeleton, Sha256(options.Source), size);
        if (!parity.Passed && !options.Force)
            throw new ConversionException($"parity gate: {parity.Verdict}; {target} was not written (--force writes it anyway).\n{report.Summary(target, written: false)}");

        var staged = ConvertedArchive.Stage(archive, report, onnxPath, skeleton, work, name);
        ConvertedArchive.Publish(staged, target, options.Force);
        return new ConversionResult(target, true, report);
    }

    public static string TargetPath(string exportPath, string modelName) => Path.GetFullPath(Path.Combine(exportPath, modelName + ".mar"));

    private static void Validate(ConvertOptions options)
    {
        if (!File.Exists(options.Source) && !Directory.Exists(options.Source))
            throw new ConversionException($"{options.Source}: no such archive file or folder");
        if (options.Opset < 11)
            throw new ConversionException($"--opset {options.Opset}: the segmentation models' resize to the input size needs opset 11 or later");
        if (options.ModelName is { } n && (n.Length == 0 || n.IndexOfAny(['/', '\\']) >= 0 || n is "." or ".."))
            throw new ConversionException($"--model-name '{n}' is not a valid file name");
        if (options.Samples is { } samples && !Directory.Exists(samples))
            throw new ConversionException($"--samples {samples}: no such folder");
        if (File.Exists(options.ExportPath))
            throw new ConversionException($"--export-path {options.ExportPath} is a file, not a folder");
    }

    /// <summary>A fixed-size model only loads in image_segmenter's <c>fixed</c> mode at that size: say so before the work, not after.</summary>
    private static void CheckFixedSize((int Height, int Width) size, string mode, IReadOnlyList<double>? fixedSize, string source)
    {
        var matches = mode == "fixed" && fixedSize is [var w, var h] && (int)w == size.Width && (int)h == size.Height;
        if (!matches)
            throw new ConversionException($"{source}: --dynamic false fixes the model's input at {size.Height}x{size.Width}, and image_segmenter only feeds a " +
                $"fixed-size model in mode fixed: add 'handler:' with 'mode: fixed' and 'size: [{size.Width}, {size.Height}]' to the archive's model-config.yaml, " +
                "or keep the default dynamic axes");
    }

    private static void CheckFixedSize(ModelArchive archive, (int Height, int Width) size) =>
        CheckFixedSize(size, archive.Config.Handler.GetString("mode") ?? "torchserve", archive.Config.Handler.GetDoubleList("size"),
            Path.GetFileName(Path.TrimEndingDirectorySeparator(archive.SourcePath)));

    /// <summary>The SHA-256 of an archive file, or of a no-archive folder's files (relative names and contents, in order).</summary>
    public static string Sha256(string path)
    {
        if (File.Exists(path))
        {
            using var stream = File.OpenRead(path);
            return System.Convert.ToHexStringLower(SHA256.HashData(stream));
        }
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var file in Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes(Path.GetRelativePath(path, file) + "\n"));
            using var stream = File.OpenRead(file);
            hash.AppendData(SHA256.HashData(stream));
        }
        return System.Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static void TryDelete(string dir)
    {
        try
        {
            Directory.Delete(dir, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A file still held open (an ONNX Runtime mapping on another platform): the temp cleaner gets it.
        }
    }
}
