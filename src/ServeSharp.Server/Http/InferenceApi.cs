using ServeSharp.Sdk;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Metrics;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Http;

/// <summary>TorchServe's inference API: /ping, /predictions/{model}[/{version}], and the API description.</summary>
internal static class InferenceApi
{
    public static IEnumerable<Route> Routes(ModelManager models, ServerConfig config, PredictionTiming timing) =>
    [
        new(Api.Inference, "GET", "/ping", http =>
        {
            // TorchServe's 500 for an unhealthy model; 503 while stopping, which probes and load balancers read as "not now".
            var healthy = models.IsHealthy();
            return Respond.Status(http, healthy ? 200 : models.Stopping ? 503 : 500, healthy ? "Healthy" : "Unhealthy");
        }, Open: true, Also: Api.KServe), // on KServe's port too, so one health check fits every layout
        new(Api.Inference, "POST", "/predictions/{model}/{version?}", http => PredictAsync(http, models, config, timing)),
        new(Api.Inference, "PUT", "/predictions/{model}/{version?}", http => PredictAsync(http, models, config, timing)),
        new(Api.Inference, "GET", "/api-description", http => ApiDescription.WriteAsync(http, ApiDescription.Inference), Open: true),
        new(Api.Inference, "OPTIONS", "/", http => ApiDescription.WriteAsync(http, ApiDescription.Inference), Open: true),
    ];

    private static async Task PredictAsync(HttpContext http, ModelManager models, ServerConfig config, PredictionTiming timing)
    {
        var arrived = timing.Arrived();
        var model = models.Get(http.RouteString("model")!, http.RouteString("version"));
        ModelManager.EnsureServing(model); // refuse before reading a body nobody will run
        var request = await RequestReader.ReadAsync(http, config.MaxRequestSize, timing.Clock, http.RequestAborted);
        timing.BodyRead(request, arrived);
        var result = await models.PredictAsync(model, http.RouteString("version"), request, InferenceProtocol.TorchServeRest, http.RequestAborted);
        try
        {
            if (result.Body.Length > config.MaxResponseSize)
                throw new Wlm.InternalServerException($"Response of {result.Body.Length} bytes exceeds max_response_size ({config.MaxResponseSize} bytes)");

            http.Response.StatusCode = result.StatusCode;
            http.Response.ContentType = result.ContentType;
            if (result.Headers is { } headers)
            {
                foreach (var (k, v) in headers) http.Response.Headers[k] = v;
            }
            http.Response.ContentLength = result.Body.Length;
            await http.Response.Body.WriteAsync(result.Body, http.RequestAborted);
            await http.Response.Body.FlushAsync(http.RequestAborted); // the write stage ends with the bytes handed to the socket
        }
        finally
        {
            result.BodyOwner?.Dispose(); // Kestrel has copied the body (or the client left): a pooled buffer goes back
        }
        timing.Written(model.Name, request);
    }

    /// <summary>A route value as text, or null when absent.</summary>
    public static string? RouteString(this HttpContext http, string name) => http.Request.RouteValues[name] as string;
}
