using Microsoft.Extensions.Primitives;
using ServeSharp.Server.Configuration;

namespace ServeSharp.Server.Http;

/// <summary>
/// CORS as TorchServe configures Netty's CorsHandler from cors_allowed_origin / cors_allowed_methods /
/// cors_allowed_headers, on every REST listener: a preflight (OPTIONS with Origin and Access-Control-Request-Method) is
/// answered 200 here and goes no further; other requests from an allowed origin get Access-Control-Allow-Origin. A
/// request from another origin is served without CORS headers, so the browser, not the server, refuses it.
/// </summary>
internal sealed class Cors
{
    private readonly string _origin;
    private readonly string _methods;
    private readonly string[] _headers;

    private Cors(ServerConfig config)
    {
        _origin = config.CorsAllowedOrigin!;
        _methods = string.Join(", ", config.CorsAllowedMethods);
        _headers = [.. config.CorsAllowedHeaders];
    }

    /// <summary>The CORS middleware, or null when cors_allowed_origin is not set (TorchServe's default: no CORS).</summary>
    public static Cors? For(ServerConfig config) => config.CorsAllowedOrigin is null ? null : new Cors(config);

    public Task Handle(HttpContext http, RequestDelegate next)
    {
        var origin = http.Request.Headers.Origin.ToString();
        if (origin.Length == 0) return next(http);
        var allowed = _origin == "*" || string.Equals(_origin, origin, StringComparison.OrdinalIgnoreCase);
        var headers = http.Response.Headers;
        if (allowed)
        {
            headers.AccessControlAllowOrigin = _origin == "*" ? "*" : origin;
            if (_origin != "*") headers.Vary = "Origin";
        }
        if (!HttpMethods.IsOptions(http.Request.Method) || StringValues.IsNullOrEmpty(http.Request.Headers.AccessControlRequestMethod))
            return next(http);

        // Preflight: answered here, whatever the path (the browser sends no token with it).
        if (allowed)
        {
            headers.AccessControlAllowMethods = _methods.Length > 0 ? _methods : http.Request.Headers.AccessControlRequestMethod.ToString();
            var requested = http.Request.Headers.AccessControlRequestHeaders.ToString();
            // "*" allows whatever the browser asks for; echoing the list also works for credentialed requests, where "*" does not.
            headers.AccessControlAllowHeaders = _headers.Contains("*") ? requested : string.Join(", ", _headers);
            headers.AccessControlMaxAge = "1800";
        }
        http.Response.StatusCode = 200;
        http.Response.ContentLength = 0;
        return Task.CompletedTask;
    }
}
