using ServeSharp.Server.Configuration;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Http;

/// <summary>TorchServe's inference API: /ping, /predictions/{model}[/{version}], and the API description.</summary>
internal static class InferenceApi
{
    public static void Map(WebApplication app, ModelManager models, ServerConfig config)
    {
        app.MapGet("/ping", (HttpContext http) =>
        {
            // Unhealthy when any model has fewer ready workers than its minWorkers (TorchServe's rule).
            var healthy = models.AllModels().All(m => m.ReadyWorkerCount >= m.Settings.MinWorkers);
            return Respond.Status(http, healthy ? 200 : 500, healthy ? "Healthy" : "Unhealthy");
        });

        app.MapMethods("/predictions/{model}/{version?}", ["POST", "PUT"], (HttpContext http, string model, string? version) =>
            PredictAsync(http, models, config, model, version));

        app.MapGet("/api-description", (HttpContext http) => ApiDescription.WriteAsync(http, ApiDescription.Inference));
        app.MapMethods("/", ["OPTIONS"], (HttpContext http) => ApiDescription.WriteAsync(http, ApiDescription.Inference));
    }

    private static async Task PredictAsync(HttpContext http, ModelManager models, ServerConfig config, string name, string? version)
    {
        try
        {
            var model = models.Get(name, version);
            if (!model.HasWorkers)
                throw new ApiException(503, $"Model \"{model.Name}\" has no worker to serve inference request. Please use scale workers API to add workers.", "ServiceUnavailableException");

            var request = await RequestReader.ReadAsync(http, config.MaxRequestSize, http.RequestAborted);
            var job = new Job(request);
            if (!model.Queue.Writer.TryWrite(job))
            {
                http.Response.Headers.RetryAfter = "1";
                throw new ApiException(503, $"Model \"{model.Name}\" version {model.Version}: the job queue is full ({config.JobQueueSize} waiting); retry later", "ServiceUnavailableException");
            }

            var result = await job.Completion;
            if (result.Body.Length > config.MaxResponseSize)
                throw new ApiException(500, $"Response of {result.Body.Length} bytes exceeds max_response_size ({config.MaxResponseSize} bytes)", "InternalServerException");

            http.Response.StatusCode = result.StatusCode;
            http.Response.ContentType = result.ContentType;
            if (result.Headers is { } headers)
            {
                foreach (var (k, v) in headers) http.Response.Headers[k] = v;
            }
            http.Response.ContentLength = result.Body.Length;
            await http.Response.Body.WriteAsync(result.Body, http.RequestAborted);
        }
        catch (ApiException e)
        {
            await Respond.Error(http, e);
        }
    }
}
