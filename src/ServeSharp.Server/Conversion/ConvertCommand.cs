using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;

namespace ServeSharp.Server.Conversion;

/// <summary>
/// <c>servesharp convert SOURCE.mar --export-path DIR [...]</c>: the subcommand's options, parsing and exit codes
/// (0 written, 1 refused — the reason on stderr, nothing written —, 2 a usage mistake, 130 interrupted).
/// </summary>
internal static class ConvertCommand
{
    public const string Name = "convert";

    private static readonly Argument<string> SourceArgument = new("SOURCE") { Description = "the TorchServe archive: a .mar (eager model.py + state dict, or TorchScript .pt), .tar.gz or no-archive folder" };
    private static readonly Option<string> ExportPathOption = new("--export-path") { Description = "the folder to write NAME.mar to (created when missing)", Required = true };
    private static readonly Option<string> ModelNameOption = new("--model-name") { Description = "the converted archive's model name and file name (default: the source's modelName)" };
    private static readonly Option<int> OpsetOption = new("--opset") { Description = "the ONNX opset to export with", DefaultValueFactory = _ => ConvertOptions.DefaultOpset };
    private static readonly Option<string> InputSizeOption = new("--input-size") { Description = "HxW: the export's example and the generated parity samples (default 224x224, what TorchServe's image_segmenter feeds the model)" };
    private static readonly Option<bool> DynamicOption = new("--dynamic") { Description = "dynamic batch and spatial axes (the default); --dynamic false fixes H and W at --input-size", DefaultValueFactory = _ => true };
    private static readonly Option<bool> Fp16Option = new("--fp16") { Description = "store the weights as float16 (half the archive; the model still takes and gives float32)" };
    private static readonly Option<string> SamplesOption = new("--samples") { Description = "a folder of images to measure parity on (through image_segmenter's steps) instead of generated ones" };
    private static readonly Option<bool> ForceOption = new("--force", "-f") { Description = "overwrite an existing archive, and write it even below the 99.5 % parity gate (the report says so)" };
    private static readonly Option<string> PythonOption = new("--python") { Description = "the Python with torch to load the model with (default: the first python3/python on PATH that can import torch)" };

    /// <summary>The subcommand, for the root command's help and for parsing.</summary>
    public static Command Create() => new(Name, "convert a TorchServe archive (.pt/.pth) into an ONNX archive ServeSharp serves, with a parity report")
    {
        SourceArgument, ExportPathOption, ModelNameOption, OpsetOption, InputSizeOption, DynamicOption, Fp16Option, SamplesOption, ForceOption, PythonOption,
    };

    /// <summary>Runs <c>servesharp convert ...</c>; <paramref name="args"/> start with "convert".</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        var root = new RootCommand("servesharp") { Create() };
        var parsed = root.Parse(args);
        if (args.Any(a => a is "-h" or "--help" or "-?"))
        {
            await parsed.InvokeAsync();
            return 0;
        }
        ConvertOptions options;
        try
        {
            if (parsed.Errors.Count > 0) throw new ArgumentException(string.Join("; ", parsed.Errors.Select(e => e.Message)));
            options = Options(parsed);
        }
        catch (ArgumentException e)
        {
            await Console.Error.WriteLineAsync($"servesharp convert: {e.Message}\n(servesharp convert --help lists the options)");
            return 2;
        }

        using var interrupted = new CancellationTokenSource();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; interrupted.Cancel(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; interrupted.Cancel(); });
        try
        {
            var result = await ArchiveConverter.ConvertAsync(options, line => Console.WriteLine($"servesharp convert: {line}"), timeout: null, interrupted.Token);
            Console.WriteLine(result.Report.Summary(result.Target, result.Written));
            if (result.Report.Handler.To != TorchServeArchive.ImageSegmenter)
                Console.WriteLine($"  note      {result.Report.Handler.From} is Python, which ServeSharp does not run: the archive's handler is now " +
                    $"{result.Report.Handler.To}, {result.Report.Handler.Note}. {result.Report.Handler.From} stays in the archive for reference.");
            return 0;
        }
        catch (ConversionException e)
        {
            await Console.Error.WriteLineAsync($"servesharp convert: {e.Message}");
            return 1;
        }
        catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("servesharp convert: interrupted; nothing was written");
            return 130;
        }
    }

    private static ConvertOptions Options(ParseResult parsed) => new()
    {
        Source = parsed.GetValue(SourceArgument)!,
        ExportPath = parsed.GetValue(ExportPathOption)!,
        ModelName = parsed.GetValue(ModelNameOption),
        Opset = parsed.GetValue(OpsetOption),
        InputSize = parsed.GetValue(InputSizeOption) is { } size ? InputSize(size) : null,
        Dynamic = parsed.GetValue(DynamicOption),
        Fp16 = parsed.GetValue(Fp16Option),
        Samples = parsed.GetValue(SamplesOption),
        Force = parsed.GetValue(ForceOption),
        Python = parsed.GetValue(PythonOption),
    };

    /// <summary>"HxW" (or "H,W"), each side 32 to 8192 pixels.</summary>
    public static (int Height, int Width) InputSize(string text)
    {
        var parts = text.Split('x', 'X', ',');
        if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var h)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var w) && h is >= 32 and <= 8192 && w is >= 32 and <= 8192)
            return (h, w);
        throw new ArgumentException($"--input-size '{text}' is not HxW with each side from 32 to 8192 (for example 224x224)");
    }
}
