using System.Text.Json.Nodes;

namespace ServeSharp.Server.Http;

/// <summary>The OpenAPI 3 description each API answers on <c>OPTIONS /</c> and <c>GET /api-description</c>.</summary>
internal static class ApiDescription
{
    public static readonly JsonObject Inference = Document("ServeSharp inference API", [
        ("/ping", "get", "Health of the server: Healthy, or Unhealthy (500) when a model has fewer workers than minWorkers and they are not being restarted within maxRetryTimeoutInSec"),
        ("/predictions/{model_name}", "post", "Predict with the default version of a model"),
        ("/predictions/{model_name}/{model_version}", "post", "Predict with a given version of a model"),
        ("/api-description", "get", "This document"),
    ]);

    public static readonly JsonObject Management = Document("ServeSharp management API", [
        ("/models", "get", "List registered models (limit, next_page_token)"),
        ("/models", "post", "Register a model (url, model_name, handler, batch_size, max_batch_delay, initial_workers, synchronous, response_timeout)"),
        ("/models/{model_name}", "get", "Describe the default version of a model"),
        ("/models/{model_name}", "put", "Scale workers (min_worker, max_worker, synchronous, timeout)"),
        ("/models/{model_name}", "delete", "Unregister the default version of a model"),
        ("/models/{model_name}/{model_version}", "get", "Describe a version, or all versions with 'all'"),
        ("/models/{model_name}/{model_version}", "put", "Scale workers of a version"),
        ("/models/{model_name}/{model_version}", "delete", "Unregister a version"),
        ("/models/{model_name}/{model_version}/set-default", "put", "Make a version the default"),
        ("/api-description", "get", "This document"),
    ]);

    public static Task WriteAsync(HttpContext http, JsonObject document)
    {
        http.Response.ContentType = "application/json";
        return http.Response.WriteAsync(document.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }), http.RequestAborted);
    }

    private static JsonObject Document(string title, (string Path, string Method, string Summary)[] operations)
    {
        var paths = new JsonObject();
        foreach (var (path, method, summary) in operations)
        {
            if (paths[path] is not JsonObject item) paths[path] = item = [];
            item[method] = new JsonObject
            {
                ["summary"] = summary,
                ["responses"] = new JsonObject { ["200"] = new JsonObject { ["description"] = "OK" } },
            };
        }
        return new JsonObject
        {
            ["openapi"] = "3.0.1",
            ["info"] = new JsonObject { ["title"] = title, ["version"] = typeof(ApiDescription).Assembly.GetName().Version?.ToString() ?? "0" },
            ["paths"] = paths,
        };
    }
}
