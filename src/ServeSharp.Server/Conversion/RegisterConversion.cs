using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using ServeSharp.Archive;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Conversion;

/// <summary>
/// Registration's side of <c>servesharp convert</c>. An archive TorchServe would serve with torch (image_segmenter or a
/// handler .py over a .pt/.pth model) is refused with a 400 naming the command that converts it — or, with
/// <c>convert_torchserve_archives=true</c>, converted on the spot into a cache keyed by the archive's SHA-256 (in the
/// model store, <c>.servesharp-converted/</c>), so each archive is converted once, by the first registration (or
/// start) that needs it, and loaded from there ever after.
/// </summary>
internal sealed partial class RegisterConversion(ServerConfig config, ServerFolders folders, ILoggerFactory loggers)
{
    /// <summary>How long the torch side may take for one archive (a ResNet-101 DeepLab on a small CPU takes minutes).</summary>
    public static readonly TimeSpan TorchTimeout = TimeSpan.FromMinutes(30);

    public const string CacheFolderName = ".servesharp-converted";

    private readonly ILogger _logger = loggers.CreateLogger("ServeSharp.Convert");
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _converting = new(StringComparer.Ordinal);

    public string CacheFolder => Path.Combine(Path.GetFullPath(config.ModelStore ?? folders.Root), CacheFolderName);

    /// <summary>
    /// The archive to register: <paramref name="archive"/> itself, or its converted copy (opened with <paramref name="open"/>;
    /// <paramref name="archive"/> is then disposed). Throws the 400 that names the command when conversion is off.
    /// </summary>
    public async Task<ModelArchive> PrepareAsync(ModelArchive archive, string path, Func<string, ModelArchive> open, CancellationToken cancellationToken)
    {
        if (!TorchServeArchive.NeedsConversion(archive)) return archive;
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(path));
        if (!config.ConvertTorchServeArchives) throw new BadRequestException(Refusal(archive, path, name));

        var converted = await ConvertOnceAsync(archive, path, name, cancellationToken);
        ModelArchive opened;
        try
        {
            opened = open(converted);
        }
        catch (ArchiveException e)
        {
            throw new InternalServerException($"{name}: its converted copy {converted} cannot be opened: {e.Message}", e);
        }
        archive.Dispose();
        return opened;
    }

    /// <summary>What to type: the conversion into a folder beside the archive, and what to register then.</summary>
    public string Refusal(ModelArchive archive, string path, string name)
    {
        var full = Path.GetFullPath(path);
        var exportPath = Path.Combine(Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(full))!, "onnx");
        var converted = Path.Combine(exportPath, archive.ModelName + ".mar");
        var store = config.ModelStore is { } s ? Path.GetFullPath(s) + Path.DirectorySeparatorChar : null;
        var register = store is not null && converted.StartsWith(store, StringComparison.Ordinal) ? converted[store.Length..] : converted;
        return $"{name} is a TorchServe archive of a PyTorch model ({TorchServeArchive.Describe(archive.Model)}); ServeSharp serves ONNX models. " +
            $"Convert it once with `servesharp convert {Quote(full)} --export-path {Quote(exportPath)}` and register {register}, " +
            "or set convert_torchserve_archives=true in config.properties to convert archives like it when they are registered.";
    }

    private async Task<string> ConvertOnceAsync(ModelArchive archive, string path, string name, CancellationToken cancellationToken)
    {
        var sha = await Task.Run(() => ArchiveConverter.Sha256(path), cancellationToken);
        var folder = Path.Combine(CacheFolder, sha[..32]);
        var target = ArchiveConverter.TargetPath(folder, archive.ModelName);
        var gate = _converting.GetOrAdd(sha, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(cancellationToken);
        try
        {
            if (File.Exists(target))
            {
                LogCached(_logger, name, target);
                return target;
            }
            LogConverting(_logger, name, archive.Model.SerializedFile, archive.Model.Handler);
            var started = Stopwatch.GetTimestamp();
            ConversionResult result;
            try
            {
                result = await ArchiveConverter.ConvertAsync(new ConvertOptions { Source = path, ExportPath = folder },
                    line => LogProgress(_logger, name, line), TorchTimeout, cancellationToken);
            }
            catch (ConversionException e)
            {
                throw new BadRequestException($"{name} is a TorchServe archive of a PyTorch model, and converting it to ONNX failed: {e.Message}", inner: e);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new InternalServerException($"{name}: the converted archive cannot be written to {folder}: {e.Message}", e);
            }
            var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            var parity = result.Report.Parity;
            LogConverted(_logger, name, seconds, parity.PixelAgreement, parity.MaxAbsProbDelta, target);
            return target;
        }
        finally
        {
            gate.Release();
        }
    }

    private static string Quote(string path) => path.Any(c => char.IsWhiteSpace(c) || c is '\'' or '"' or '$' or '`') ? $"'{path.Replace("'", "'\\''", StringComparison.Ordinal)}'" : path;

    [LoggerMessage(EventId = 4101, Level = LogLevel.Information, Message = "Converting TorchServe archive {Archive} (serializedFile {SerializedFile}, handler {Handler}) to ONNX")]
    private static partial void LogConverting(ILogger logger, string archive, string? serializedFile, string? handler);

    [LoggerMessage(EventId = 4102, Level = LogLevel.Information, Message = "{Archive}: {Progress}")]
    private static partial void LogProgress(ILogger logger, string archive, string progress);

    [LoggerMessage(EventId = 4103, Level = LogLevel.Information,
        Message = "Converted {Archive} to ONNX in {Seconds:F1} s (pixel agreement {Agreement:P3}, max |Δprob| {MaxDelta:E1}): {Converted}")]
    private static partial void LogConverted(ILogger logger, string archive, double seconds, double agreement, double maxDelta, string converted);

    [LoggerMessage(EventId = 4104, Level = LogLevel.Information, Message = "{Archive} was converted before: loading {Converted}")]
    private static partial void LogCached(ILogger logger, string archive, string converted);
}
