using ServeSharp.Server.Metrics;

namespace ServeSharp.Server.Http;

/// <summary>TorchServe's metrics API: Prometheus text at /metrics, filtered by <c>?name[]=</c>.</summary>
internal static class MetricsApi
{
    public static void Map(WebApplication app, ServerMetrics metrics)
    {
        app.MapGet("/metrics", async (HttpContext http) =>
        {
            var names = http.Request.Query["name[]"].Where(n => !string.IsNullOrEmpty(n)).Select(n => n!).ToHashSet(StringComparer.Ordinal);
            var text = await metrics.ExportAsync(names, http.RequestAborted);
            http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await http.Response.WriteAsync(text, http.RequestAborted);
        });
    }
}
