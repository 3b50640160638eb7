using System.Security.Cryptography;
using ServeSharp.Server.Configuration;

namespace ServeSharp.Server.Http;

/// <summary>
/// The playground (enable_playground=true): a static page on the inference port at <c>/</c> and <c>/playground</c>,
/// with its script and style sheet, embedded in this assembly (Playground/). The page loads without a token, as
/// /ping does; the API calls it makes carry the inference key the user types. Its Content-Security-Policy allows
/// only this origin's script, style, images from the page's own blobs and fetches to this origin: no inline code.
/// </summary>
internal static class PlaygroundApi
{
    private const string Policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; " +
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    public static IEnumerable<Route> Routes(ServerConfig config)
    {
        if (!config.EnablePlayground)
        {
            // Off, the paths answer as unknown paths do (the edge writes TorchServe's 404 for an empty 404). GET / must
            // be said explicitly: OPTIONS / (the API description) exists, so routing alone would answer 405.
            return [new(Api.Inference, "GET", "/", NotFound, Open: true), new(Api.Inference, "GET", "/playground", NotFound, Open: true)];
        }
        var page = Asset.Load("index.html", "text/html; charset=utf-8");
        var script = Asset.Load("playground.js", "text/javascript; charset=utf-8");
        var style = Asset.Load("playground.css", "text/css; charset=utf-8");
        return
        [
            new(Api.Inference, "GET", "/", page.WriteAsync, Open: true),
            new(Api.Inference, "GET", "/playground", http => http.Request.Path.Value!.EndsWith('/') ? ToSlashless(http) : page.WriteAsync(http), Open: true),
            new(Api.Inference, "GET", "/playground/playground.js", script.WriteAsync, Open: true),
            new(Api.Inference, "GET", "/playground/playground.css", style.WriteAsync, Open: true),
        ];
    }

    // Routing matches /playground/ too, where the page's relative links would point under /playground/: send the
    // browser to /playground, relatively, so it also works behind a proxy's path prefix.
    private static Task ToSlashless(HttpContext http)
    {
        http.Response.StatusCode = StatusCodes.Status301MovedPermanently;
        http.Response.Headers.Location = "../playground" + http.Request.QueryString;
        return Task.CompletedTask;
    }

    private static Task NotFound(HttpContext http)
    {
        http.Response.StatusCode = StatusCodes.Status404NotFound;
        return Task.CompletedTask;
    }

    /// <summary>One embedded file, read once, with a strong ETag so a browser revalidates it cheaply.</summary>
    private sealed record Asset(byte[] Body, string ContentType, string ETag)
    {
        public static Asset Load(string name, string contentType)
        {
            using var stream = typeof(PlaygroundApi).Assembly.GetManifestResourceStream("playground/" + name)
                ?? throw new InvalidOperationException($"the playground's {name} is not embedded in the server assembly");
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            var body = copy.ToArray();
            return new Asset(body, contentType, $"\"{Convert.ToHexStringLower(SHA256.HashData(body))[..16]}\"");
        }

        public Task WriteAsync(HttpContext http)
        {
            var headers = http.Response.Headers;
            headers.ContentSecurityPolicy = Policy;
            headers.XContentTypeOptions = "nosniff";
            headers["Referrer-Policy"] = "no-referrer";
            headers.CacheControl = "no-cache";
            headers.ETag = ETag;
            if (http.Request.Headers.IfNoneMatch == ETag)
            {
                http.Response.StatusCode = StatusCodes.Status304NotModified;
                return Task.CompletedTask;
            }
            http.Response.ContentType = ContentType;
            http.Response.ContentLength = Body.Length;
            return http.Response.Body.WriteAsync(Body, http.RequestAborted).AsTask();
        }
    }
}
