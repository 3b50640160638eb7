using System.Text.RegularExpressions;
using ServeSharp.Server.Configuration;

namespace ServeSharp.Server.Wlm;

/// <summary>
/// Turns a registration <c>url</c> into a local archive path, as TorchServe does: a name in the model store,
/// a local path, or an http(s)/file URL that must match <c>allowed_urls</c> (downloads land in the model store).
/// </summary>
internal sealed class ModelSource(ServerConfig config, ServerFolders folders, HttpClient http)
{
    private readonly Regex[] _allowed = [.. config.AllowedUrls.Select(p => new Regex("^(" + p + ")$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)))];

    public string ModelStore => config.ModelStore ?? throw new BadRequestException("No model store is configured (--model-store or model_store)");

    /// <summary>Where archives are extracted while their model is registered.</summary>
    public string ExtractionRoot => folders.Models;

    public async Task<string> ResolveAsync(string url, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(url)) throw new BadRequestException("Parameter url is required");

        if (url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            CheckAllowed(url);
            return await DownloadAsync(new Uri(url), cancellationToken);
        }

        if (url.StartsWith("file://", StringComparison.OrdinalIgnoreCase))
        {
            CheckAllowed(url);
            return Existing(new Uri(url).LocalPath, url);
        }

        if (Path.IsPathRooted(url)) return Existing(url, url);

        var store = Path.GetFullPath(ModelStore);
        var inStore = Path.GetFullPath(Path.Combine(store, url));
        if (!inStore.StartsWith(store + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new BadRequestException($"Invalid model url '{url}': it leaves the model store");
        return Existing(inStore, url);
    }

    /// <summary>
    /// What the config snapshot should remember for a registration: a downloaded archive is in the model store now,
    /// so a restart must load that file rather than download it again.
    /// </summary>
    public static string SnapshotName(string url, string resolvedPath) =>
        url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("https://", StringComparison.OrdinalIgnoreCase)
            ? Path.GetFileName(resolvedPath)
            : url;

    private void CheckAllowed(string url)
    {
        if (!_allowed.Any(r => r.IsMatch(url)))
            throw new BadRequestException($"Given URL {url} does not match any allowed URL(s)");
    }

    private static string Existing(string path, string url) =>
        File.Exists(path) || Directory.Exists(path) ? path : throw new ModelNotFoundException($"Model not found in model store: {url}");

    private async Task<string> DownloadAsync(Uri uri, CancellationToken cancellationToken)
    {
        var fileName = Path.GetFileName(uri.LocalPath);
        if (string.IsNullOrEmpty(fileName) || fileName is "." or "..")
            throw new BadRequestException($"Cannot tell the archive's file name from {uri}");
        var target = Path.Combine(ModelStore, fileName);
        if (File.Exists(target))
            throw new ConflictStatusException($"Model archive {fileName} already exists in the model store", "FileAlreadyExistsException");

        var partial = target + ".download-" + Guid.NewGuid().ToString("N");
        try
        {
            using var response = await http.GetAsync(uri, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            if (!response.IsSuccessStatusCode)
                throw new BadRequestException($"Failed to download model from {uri}: HTTP {(int)response.StatusCode}", "DownloadArchiveException");
            if (response.Content.Headers.ContentLength > config.MaxArchiveBytes)
                throw new BadRequestException($"Model archive at {uri} is larger than {config.MaxArchiveBytes} bytes");
            await using (var body = await response.Content.ReadAsStreamAsync(cancellationToken))
            await using (var file = File.Create(partial))
            {
                await CopyCappedAsync(body, file, config.MaxArchiveBytes, uri, cancellationToken);
            }
            File.Move(partial, target);
            return target;
        }
        catch (HttpRequestException e)
        {
            throw new BadRequestException($"Failed to download model from {uri}: {e.Message}", "DownloadArchiveException");
        }
        finally
        {
            if (File.Exists(partial)) File.Delete(partial);
        }
    }

    private static async Task CopyCappedAsync(Stream from, Stream to, long cap, Uri uri, CancellationToken cancellationToken)
    {
        var buffer = new byte[81920];
        long total = 0;
        int read;
        while ((read = await from.ReadAsync(buffer, cancellationToken)) > 0)
        {
            total += read;
            if (total > cap) throw new BadRequestException($"Model archive at {uri} is larger than {cap} bytes");
            await to.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
        }
    }
}
