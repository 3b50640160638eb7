using System.Globalization;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Metrics;
using ServeSharp.Server.Oip;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Http;

/// <summary>
/// The Open Inference Protocol v2 over REST, on the inference API's listener and KServe's (kserve_address): health, server and model metadata,
/// model readiness and inference (JSON, or JSON plus binary tensor data). Errors are <c>{"error": "..."}</c>.
/// </summary>
internal static class OipApi
{
    public static IEnumerable<Route> Routes(ModelManager models, ServerConfig config, PredictionTiming timing)
    {
        Route Get(string pattern, RequestDelegate handler, bool open = false) => new(Api.Inference, "GET", pattern, handler, open, ErrorForm.KServe, Api.KServe);
        return
        [
            Get("/v2", http => Respond.Json(http, 200, new OipServerMetadata(OipMetadata.ServerName, OipMetadata.ServerVersion, OipMetadata.Extensions), ApiJsonContext.Relaxed.OipServerMetadata)),
            Get("/v2/health/live", http => Respond.Json(http, 200, new KServeLive(true), ApiJsonContext.Relaxed.KServeLive), open: true),
            // The protocol answers readiness by status: 200 for true, 4xx for false; 503 while the server stops.
            Get("/v2/health/ready", http => models.IsHealthy()
                ? Respond.Json(http, 200, new KServeReady(true), ApiJsonContext.Relaxed.KServeReady)
                : Respond.Json(http, models.Stopping ? 503 : 400, new KServeReady(false), ApiJsonContext.Relaxed.KServeReady), open: true),
            Get("/v2/models/{model}", http => MetadataAsync(http, models)),
            Get("/v2/models/{model}/versions/{version}", http => MetadataAsync(http, models)),
            Get("/v2/models/{model}/ready", http => ReadyAsync(http, models)),
            Get("/v2/models/{model}/versions/{version}/ready", http => ReadyAsync(http, models)),
            new(Api.Inference, "POST", "/v2/models/{model}/infer", http => InferAsync(http, models, config, timing), Errors: ErrorForm.KServe, Also: Api.KServe),
            new(Api.Inference, "POST", "/v2/models/{model}/versions/{version}/infer", http => InferAsync(http, models, config, timing), Errors: ErrorForm.KServe, Also: Api.KServe),
        ];
    }

    private static Model Target(HttpContext http, ModelManager models) => models.Get(http.RouteString("model")!, http.RouteString("version"));

    private static Task MetadataAsync(HttpContext http, ModelManager models)
    {
        var model = Target(http, models);
        var (inputs, outputs) = OipMetadata.TensorsOf(model);
        var metadata = new OipModelMetadata(model.Name, [.. models.GetAllVersions(model.Name).Select(m => m.Version)], OipMetadata.PlatformOf(model),
            [.. inputs.Select(t => new OipTensorMetadata(t.Name, t.Datatype, t.Shape))], [.. outputs.Select(t => new OipTensorMetadata(t.Name, t.Datatype, t.Shape))]);
        return Respond.Json(http, 200, metadata, ApiJsonContext.Relaxed.OipModelMetadata);
    }

    private static Task ReadyAsync(HttpContext http, ModelManager models)
    {
        var model = Target(http, models);
        var ready = OipMetadata.IsReady(model);
        return Respond.Json(http, ready ? 200 : 400, new KServeModelReady(model.Name, ready), ApiJsonContext.Relaxed.KServeModelReady);
    }

    private static async Task InferAsync(HttpContext http, ModelManager models, ServerConfig config, PredictionTiming timing)
    {
        var arrived = timing.Arrived();
        var model = Target(http, models);
        ModelManager.EnsureServing(model); // refuse before reading a body nobody will run
        int? headerLength = null;
        if (http.Request.Headers[OipJson.HeaderLengthHeader] is { Count: > 0 } lengthHeader)
        {
            headerLength = int.TryParse(lengthHeader.ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n
                : throw new BadRequestException($"{OipJson.HeaderLengthHeader} '{lengthHeader}' is not a byte count");
        }
        var body = await RequestReader.ReadRawAsync(http, config.MaxRequestSize, http.RequestAborted);
        var (request, binaryOutputs) = OipJson.ReadRequest(body, headerLength);
        var instances = OipInference.Instances(model, request, RequestReader.Headers(http.Request), timing.Clock);
        timing.BodyRead(instances, arrived);
        var response = await OipInference.InferAsync(models, model, http.RouteString("version"), request, instances, InferenceProtocol.OipRest, http.RequestAborted);
        var timed = PredictionTiming.LastAnswered(instances);

        var binary = request.Outputs is { Count: > 0 } asked ? asked.Where(o => o.Binary).Select(o => o.Name).ToHashSet() : null;
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        var jsonLength = OipJson.WriteResponse(buffer, response, name => binary?.Contains(name) ?? binaryOutputs);
        if (buffer.WrittenCount > config.MaxResponseSize)
            throw new InternalServerException($"Response of {buffer.WrittenCount} bytes exceeds max_response_size ({config.MaxResponseSize} bytes)");
        timing.Serialized(timed);
        http.Response.StatusCode = 200;
        if (jsonLength == buffer.WrittenCount)
        {
            http.Response.ContentType = "application/json";
        }
        else
        {
            http.Response.ContentType = "application/octet-stream";
            http.Response.Headers[OipJson.HeaderLengthHeader] = jsonLength.ToString(CultureInfo.InvariantCulture);
        }
        http.Response.ContentLength = buffer.WrittenCount;
        await http.Response.Body.WriteAsync(buffer.WrittenMemory, http.RequestAborted);
        await http.Response.Body.FlushAsync(http.RequestAborted); // the write stage ends with the bytes handed to the socket
        timing.Written(model.Name, timed);
    }
}
