using System.Text.Json;
using ServeSharp.Sdk;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Metrics;
using ServeSharp.Server.Oip;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Http;

/// <summary>
/// KServe's v1 protocol on the inference API's listener and KServe's (kserve_address): model list and readiness, and
/// <c>:predict</c> with <c>{"instances": [...]}</c>, each instance one job through the model's queue (an image as a
/// base64 string, or an object holding it as <c>data</c> or <c>b64</c>, as KServe's TorchServe examples send).
/// The answer is <c>{"predictions": [...]}</c> in instance order. Errors are <c>{"error": "..."}</c>.
/// </summary>
internal static class KServeV1Api
{
    public static IEnumerable<Route> Routes(ModelManager models, ServerConfig config, PredictionTiming timing) =>
    [
        new(Api.Inference, "GET", "/v1/models", http => Respond.Json(http, 200, new KServeModels([.. models.ListDefaults().Select(m => m.Name)]), ApiJsonContext.Relaxed.KServeModels), Errors: ErrorForm.KServe, Also: Api.KServe),
        new(Api.Inference, "GET", "/v1/models/{model}", http =>
        {
            var model = models.Get(http.RouteString("model")!, null);
            var ready = OipMetadata.IsReady(model);
            return Respond.Json(http, ready ? 200 : 503, new KServeModelReady(model.Name, ready), ApiJsonContext.Relaxed.KServeModelReady);
        }, Errors: ErrorForm.KServe, Also: Api.KServe),
        new(Api.Inference, "POST", "/v1/models/{model}:predict", http => PredictAsync(http, models, config, timing), Errors: ErrorForm.KServe, Also: Api.KServe),
        new(Api.Inference, "POST", "/v1/models/{model}:explain", http =>
        {
            models.Get(http.RouteString("model")!, null);
            return Respond.Error(http, 501, "explain is not implemented: ServeSharp's handlers have no explanations (TorchServe's Captum explanations are Python-only)");
        }, Errors: ErrorForm.KServe, Also: Api.KServe),
    ];

    private static async Task PredictAsync(HttpContext http, ModelManager models, ServerConfig config, PredictionTiming timing)
    {
        var arrived = timing.Arrived();
        var model = models.Get(http.RouteString("model")!, null);
        ModelManager.EnsureServing(model);
        var body = await RequestReader.ReadRawAsync(http, config.MaxRequestSize, http.RequestAborted);
        var instances = Instances(body);
        var headers = RequestReader.Headers(http.Request);
        var requests = instances.Select((instance, i) => new InferenceRequest($"{http.TraceIdentifier}-{i}",
            new Dictionary<string, RequestParameter>(StringComparer.Ordinal) { ["data"] = new("data", instance, "application/json") }, headers) { Clock = timing.Clock }).ToList();
        timing.BodyRead(requests, arrived);
        var results = await OipInference.PredictAllAsync(models, model, null, requests, InferenceProtocol.KServeV1, http.RequestAborted);
        var timed = PredictionTiming.LastAnswered(requests);

        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartArray("predictions");
            foreach (var result in results) WritePrediction(json, result);
            json.WriteEndArray();
            json.WriteEndObject();
        }
        if (buffer.WrittenCount > config.MaxResponseSize)
            throw new InternalServerException($"Response of {buffer.WrittenCount} bytes exceeds max_response_size ({config.MaxResponseSize} bytes)");
        timing.Serialized(timed);
        http.Response.ContentType = "application/json";
        http.Response.ContentLength = buffer.WrittenCount;
        await http.Response.Body.WriteAsync(buffer.WrittenMemory, http.RequestAborted);
        await http.Response.Body.FlushAsync(http.RequestAborted); // the write stage ends with the bytes handed to the socket
        timing.Written(model.Name, timed);
    }

    /// <summary>Each instance's JSON text, as the handler will read it.</summary>
    private static List<ReadOnlyMemory<byte>> Instances(ReadOnlyMemory<byte> body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !(root.TryGetProperty("instances", out var list) || root.TryGetProperty("inputs", out list)) || list.ValueKind != JsonValueKind.Array)
                throw new BadRequestException("the request must be {\"instances\": [...]}");
            var instances = list.EnumerateArray().Select(i => (ReadOnlyMemory<byte>)System.Text.Encoding.UTF8.GetBytes(i.GetRawText())).ToList();
            return instances.Count == 0 ? throw new BadRequestException("instances is empty") : instances;
        }
        catch (JsonException e)
        {
            throw new BadRequestException($"the request is not valid JSON: {e.Message}");
        }
    }

    // The handler's JSON goes in as JSON; text as a string; anything else (a PNG) as {"b64": ...}, KServe's convention.
    private static void WritePrediction(Utf8JsonWriter json, JobResult result)
    {
        var type = result.ContentType;
        if (type.Contains("json", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                json.WriteRawValue(result.Body.Span); // validated as it is written
                return;
            }
            catch (Exception e) when (e is JsonException or ArgumentException)
            {
                // Not JSON after all: falls through to text.
            }
        }
        if (System.Text.Unicode.Utf8.IsValid(result.Body.Span) && !type.StartsWith("image/", StringComparison.OrdinalIgnoreCase) && type != Tensor.OutputContentType)
        {
            json.WriteStringValue(result.Body.Span);
            return;
        }
        json.WriteStartObject();
        json.WriteBase64String("b64", result.Body.Span);
        json.WriteEndObject();
    }
}
