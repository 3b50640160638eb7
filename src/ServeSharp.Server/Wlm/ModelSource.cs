using System.Text.RegularExpressions;
using ServeSharp.Server.Configuration;

namespace ServeSharp.Server.Wlm;

/// <summary>Where a registration's archive is: its local path, and whether register downloaded it into the model store.</summary>
internal sealed record ArchiveSource(string Path, bool Downloaded);

/// <summary>
/// Turns a registration <c>url</c> into a local archive path with TorchServe's rules and answers (ModelArchive.downloadModel):
/// an empty url or one with ".." is not found (404); an http(s) or file URL must match <c>allowed_urls</c> (else 404);
/// an http(s) archive is downloaded into the model store under its file name, refused when that file is already there
/// (500) and a 400 when the download fails; anything else is a name in the model store or a local path. Redirects are
/// followed here, hop by hop, and every hop must match <c>allowed_urls</c> too.
/// </summary>
internal sealed class ModelSource(ServerConfig config, ServerFolders folders, HttpClient http)
{
    private const int MaxRedirects = 10;
    private readonly Regex[] _allowed = [.. config.AllowedUrls.Select(p => new Regex("^(" + p + ")$", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase, TimeSpan.FromSeconds(1)))];

    public string ModelStore => config.ModelStore ?? throw new BadRequestException("No model store is configured (--model-store or model_store)");

    /// <summary>Where archives are extracted while their model is registered.</summary>
    public string ExtractionRoot => folders.Models;

    public async Task<ArchiveSource> ResolveAsync(string url, CancellationToken cancellationToken)
    {
        if (url.Length == 0) throw new ModelNotFoundException("empty url");
        if (url.Contains("..", StringComparison.Ordinal)) throw new ModelNotFoundException($"Relative path is not allowed in url: {url}");

        if (IsUrl(url))
        {
            CheckAllowed(url, url);
            if (url.StartsWith("file://", StringComparison.OrdinalIgnoreCase)) return new(Existing(new Uri(url).LocalPath, url), Downloaded: false);
            return new(await DownloadAsync(new Uri(url), cancellationToken), Downloaded: true);
        }

        if (Path.IsPathRooted(url)) return new(Existing(url, url), Downloaded: false);
        return new(Existing(Path.GetFullPath(Path.Combine(ModelStore, url)), url), Downloaded: false);
    }

    /// <summary>
    /// What a config snapshot records as <c>marName</c>: TorchServe writes the url's file name and looks it up in the model
    /// store on restore, so an archive in the model store (downloaded ones included) is recorded by its file name; one
    /// elsewhere keeps the url it was registered with, which ServeSharp can restore (TorchServe could not).
    /// </summary>
    public string SnapshotName(string url, ArchiveSource source)
    {
        var full = Path.GetFullPath(source.Path);
        var inStore = config.ModelStore is { } store
            && string.Equals(Path.GetDirectoryName(full), Path.GetFullPath(store).TrimEnd(Path.DirectorySeparatorChar), StringComparison.Ordinal);
        return inStore ? Path.GetFileName(full) : url;
    }

    // TorchServe's ArchiveUtils.VALID_URL_PATTERN: what must match allowed_urls.
    private static bool IsUrl(string url) =>
        url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("https://", StringComparison.OrdinalIgnoreCase)
        || url.StartsWith("file://", StringComparison.OrdinalIgnoreCase);

    private void CheckAllowed(string url, string requested)
    {
        if (_allowed.Any(r => r.IsMatch(url))) return;
        throw new ModelNotFoundException(url == requested
            ? $"Given URL {url} does not match any allowed URL(s)"
            : $"Given URL {requested} redirects to {url}, which does not match any allowed URL(s)");
    }

    private static string Existing(string path, string url) =>
        File.Exists(path) || Directory.Exists(path) ? path : throw new ModelNotFoundException($"Model not found at: {url}");

    private async Task<string> DownloadAsync(Uri uri, CancellationToken cancellationToken)
    {
        var fileName = Path.GetFileName(uri.AbsolutePath);
        if (string.IsNullOrEmpty(fileName) || fileName is "." or "..")
            throw new BadRequestException($"Cannot tell the archive's file name from {uri}", "DownloadArchiveException");
        var target = Path.Combine(ModelStore, fileName);
        if (File.Exists(target) || Directory.Exists(target)) throw new InternalServerException($"Model file already exists {fileName}");

        var partial = target + ".download-" + Guid.NewGuid().ToString("N");
        try
        {
            using var response = await GetFollowingRedirectsAsync(uri, cancellationToken);
            if (!response.IsSuccessStatusCode)
                throw new BadRequestException($"Failed to download archive from: {uri} (HTTP {(int)response.StatusCode})", "DownloadArchiveException");
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
            throw new BadRequestException($"Failed to download archive from: {uri} ({e.Message})", "DownloadArchiveException");
        }
        finally
        {
            if (File.Exists(partial)) File.Delete(partial);
        }
    }

    // The client does not follow redirects (ServerHost builds it so): each Location is checked before it is fetched, so an
    // allowed host cannot hand the server a URL that allowed_urls refuses (another host, an internal address, file:).
    private async Task<HttpResponseMessage> GetFollowingRedirectsAsync(Uri uri, CancellationToken cancellationToken)
    {
        var requested = uri.OriginalString;
        for (var hop = 0; ; hop++)
        {
            var response = await http.GetAsync(uri, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            var status = (int)response.StatusCode;
            if (status is not (301 or 302 or 303 or 307 or 308) || response.Headers.Location is not { } location) return response;
            response.Dispose();
            if (hop == MaxRedirects)
                throw new BadRequestException($"Failed to download archive from: {requested} (more than {MaxRedirects} redirects)", "DownloadArchiveException");
            var next = location.IsAbsoluteUri ? location : new Uri(uri, location);
            if (next.Scheme is not ("http" or "https")) throw new ModelNotFoundException($"Given URL {requested} redirects to {next}, which is not an http(s) URL");
            CheckAllowed(next.AbsoluteUri, requested);
            uri = next;
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
