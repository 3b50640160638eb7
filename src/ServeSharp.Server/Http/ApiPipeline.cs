using Microsoft.AspNetCore.Connections.Features;

namespace ServeSharp.Server.Http;

/// <summary>
/// Binds routes to listeners. Each Kestrel listener tags its connections with the APIs it serves; a request's path
/// is then prefixed with that set (<c>/__api3/models</c>) before routing, and the routes are mapped under one prefix per
/// set in use. So each API answers only on its own port — by the socket, not the Host header, which proxies rewrite —
/// and equal addresses share one listener that serves both APIs.
/// </summary>
internal static class ApiPipeline
{
    public const string ConnectionKey = "servesharp.api";
    public const string OriginalPathKey = "servesharp.path";

    public static string Prefix(Api apis) => "/__api" + ((int)apis).ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Middleware before routing: routes the request into its listener's route group.</summary>
    public static Task SelectApi(HttpContext http, RequestDelegate next)
    {
        var items = http.Features.Get<IConnectionItemsFeature>()?.Items;
        var apis = items is not null && items.TryGetValue(ConnectionKey, out var tag) && tag is Api a ? a : Api.None;
        http.Items[OriginalPathKey] = http.Request.Path.Value;
        http.Request.Path = Prefix(apis) + http.Request.Path.Value;
        return next(http);
    }

    /// <summary>Middleware after routing: the API's token, except on open routes and OPTIONS.</summary>
    public static RequestDelegate Authorize(TokenAuthorization auth, RequestDelegate next) => http =>
    {
        var tag = http.GetEndpoint()?.Metadata.GetMetadata<ApiTag>();
        if (tag is { Open: false } && !HttpMethods.IsOptions(http.Request.Method) && !auth.Allows(http, tag.Api))
            return auth.RefuseAsync(http, tag.Api);
        return next(http);
    };

    /// <summary>
    /// Middleware after routing: while the server stops, the inference API's requests (every protocol's predictions and
    /// model metadata) are refused with 503 and <c>Connection: close</c>; the ones admitted before are counted until
    /// answered. Health, descriptions, management and metrics are neither refused nor waited for.
    /// </summary>
    public static RequestDelegate Admit(ServerDrain drain, RequestDelegate next) => async http =>
    {
        var tag = http.GetEndpoint()?.Metadata.GetMetadata<ApiTag>();
        if (tag is not { Api: Api.Inference, Open: false } || HttpMethods.IsOptions(http.Request.Method))
        {
            await next(http);
            return;
        }
        if (!drain.TryEnter(http))
        {
            http.Response.Headers.Connection = "close";
            await Respond.Error(http, 503, "ServeSharp is shutting down: this replica takes no new requests", "ServiceUnavailableException");
            return;
        }
        try
        {
            await next(http);
        }
        finally
        {
            drain.Leave(http);
        }
    };

    /// <summary>Maps every API's routes into the group of each listener set that serves it.</summary>
    public static void Map(IEndpointRouteBuilder app, IEnumerable<Api> listenerSets, IReadOnlyList<Route> routes)
    {
        foreach (var set in listenerSets)
        {
            var group = app.MapGroup(Prefix(set));
            var seen = new HashSet<(string, string)>();
            // With two APIs on one listener, a path both define (/api-description, OPTIONS /) goes to the first API listed.
            foreach (var route in routes.Where(r => r.ServedOn(set)).OrderBy(r => r.Api))
            {
                if (!seen.Add((route.Method, route.Pattern))) continue;
                group.MapMethods(route.Pattern, [route.Method], route.Handler).WithMetadata(new ApiTag(route.Api, route.Open, route.Errors));
            }
        }
    }
}
