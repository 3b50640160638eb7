using ServeSharp.Archive;

namespace ServeSharp.Archiver;

/// <summary>Parses torch-model-archiver's flags (both "--flag value" and "--flag=value") into an <see cref="ArchiveSpec"/>.</summary>
internal static class ArchiverOptions
{
    public const string Usage = """
        usage: servesharp-archiver --model-name NAME --handler HANDLER [--version V] [--serialized-file FILE]
                                   [--model-file FILE] [--extra-files A,B,...] [-c|--config-file FILE]
                                   [-r|--requirements-file FILE] [--export-path DIR] [--runtime {python,python3,LSP}]
                                   [--archive-format {default,zip-store,no-archive,tgz}] [-f|--force]
                                   [--calibration-samples DIR] [--parity-samples DIR] [--force-int8]

          --model-name          model name; the archive is NAME.mar (NAME.tar.gz, or folder NAME)
          --handler             a built-in (image_segmenter) or a .cs/.dll file, optionally FILE:Namespace.Class
          -v, --version         model version (default 1.0)
          --serialized-file     the ONNX model
          --model-file          a model definition file, stored as TorchServe does
          --extra-files         comma-separated files or folders copied to the archive root
          -c, --config-file     model-config.yaml
          -r, --requirements-file
                                recorded in the manifest as torch-model-archiver does; ServeSharp installs nothing, so
                                the server refuses to load such an archive (its handlers are .NET)
          --export-path         where to write (default: current folder)
          --runtime             the manifest's runtime, as torch-model-archiver records it (default python)
          --archive-format      default (.mar zip), zip-store (.mar, entries stored uncompressed), no-archive (folder) or tgz
          -f, --force           overwrite an existing archive
          --calibration-samples images (png, jpg, webp, bmp) that calibrate the int8 model when model-config.yaml
                                says precision: int8: preprocessed as image_segmenter's handler: section says
          --parity-samples      images the int8 or fp16 model's class maps are compared with fp32's on (int8's
                                default: the calibration samples; fp16 needs them); below 99.5 % pixel agreement
                                nothing is written
          --force-int8          write the int8 archive even below the parity gate (the report says so)
        """;

    public static ArchiverCommand Parse(string[] args)
    {
        var values = new Dictionary<string, string>();
        var (force, forceInt8) = (false, false);
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (arg is "-f" or "--force") { force = true; continue; }
            if (arg is "--force-int8") { forceInt8 = true; continue; }
            var eq = arg.IndexOf('=');
            var key = eq > 0 ? arg[..eq] : arg;
            key = key switch { "-v" => "--version", "-r" => "--requirements-file", "-c" => "--config-file", _ => key };
            if (!KnownFlags.Contains(key)) throw new ArgumentException($"unknown argument '{arg}'");
            string value;
            if (eq > 0) value = arg[(eq + 1)..];
            else if (i + 1 < args.Length) value = args[++i];
            else throw new ArgumentException($"{key} needs a value");
            values[key] = value;
        }

        string? Get(string key) => values.TryGetValue(key, out var v) ? v : null;
        var spec = new ArchiveSpec
        {
            ModelName = Get("--model-name") ?? throw new ArgumentException("--model-name is required"),
            Handler = Get("--handler") ?? throw new ArgumentException("--handler is required"),
            Version = Get("--version") ?? "1.0",
            SerializedFile = Get("--serialized-file"),
            ModelFile = Get("--model-file"),
            ExtraFiles = Get("--extra-files")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [],
            ConfigFile = Get("--config-file"),
            RequirementsFile = Get("--requirements-file"),
            ExportPath = Get("--export-path") ?? ".",
            Format = ArchiveFormats.Parse(Get("--archive-format") ?? "default"),
            Force = force,
            Runtime = Get("--runtime") ?? "python",
        };
        return new ArchiverCommand(spec, Get("--calibration-samples"), Get("--parity-samples"), forceInt8);
    }

    private static readonly HashSet<string> KnownFlags =
    [
        "--model-name", "--handler", "--version", "--serialized-file", "--model-file", "--extra-files",
        "--config-file", "--requirements-file", "--export-path", "--archive-format", "--runtime",
        "--calibration-samples", "--parity-samples",
    ];
}

/// <summary>The archive to write, and what precision: int8 needs (calibration and parity images, and whether to pass the gate by force).</summary>
internal sealed record ArchiverCommand(ArchiveSpec Spec, string? CalibrationSamples, string? ParitySamples, bool ForceInt8);
