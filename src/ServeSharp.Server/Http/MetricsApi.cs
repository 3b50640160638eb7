using ServeSharp.Server.Metrics;

namespace ServeSharp.Server.Http;

/// <summary>TorchServe's metrics API: Prometheus text at /metrics, filtered by <c>?name[]=</c>.</summary>
internal static class MetricsApi
{
    public static IEnumerable<Route> Routes(ServerMetrics metrics) =>
    [
        new(Api.Metrics, "GET", "/metrics", async http =>
        {
            var names = http.Request.Query["name[]"].Where(n => !string.IsNullOrEmpty(n)).Select(n => n!).ToHashSet(StringComparer.Ordinal);
            var text = await metrics.ExportAsync(names, http.RequestAborted);
            http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await http.Response.WriteAsync(text, http.RequestAborted);
        }, Open: true),
    ];
}
