using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Org.Pytorch.Serve.Grpc.Inference;
using ServeSharp.Sdk;
using ServeSharp.Server.Http;
using ServeSharp.Server.Metrics;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Grpc;

/// <summary>
/// TorchServe's gRPC inference API. Every prediction takes the REST path's way (<see cref="ModelManager.PredictAsync"/>:
/// the model's queue, its aggregator and workers), with the call's token as the client's, so a deadline or a
/// cancelled call takes the job out of the queue or cancels its batch.
/// </summary>
internal sealed class InferenceService(ModelManager models, PredictionTiming timing) : InferenceAPIsService.InferenceAPIsServiceBase
{
    public override Task<TorchServeHealthResponse> Ping(Empty request, ServerCallContext context)
    {
        // TorchServe answers OK either way, with the REST /ping body as text.
        var status = new StatusResponse(models.IsHealthy() ? "Healthy" : "Unhealthy");
        return Task.FromResult(new TorchServeHealthResponse { Health = JsonSerializer.Serialize(status, ApiJsonContext.Relaxed.StatusResponse) });
    }

    public override async Task<PredictionResponse> Predictions(PredictionsRequest request, ServerCallContext context)
    {
        var (response, model, timed) = await PredictAsync(request, context);
        timing.Written(model, timed); // the reply goes back to gRPC, which encodes and sends it after this
        return response;
    }

    /// <summary>TorchServe's streaming responses; a handler here answers once, so the stream has one message.</summary>
    public override async Task StreamPredictions(PredictionsRequest request, IServerStreamWriter<PredictionResponse> responseStream, ServerCallContext context)
    {
        var (response, model, timed) = await PredictAsync(request, context);
        await responseStream.WriteAsync(response, context.CancellationToken);
        timing.Written(model, timed);
    }

    /// <summary>
    /// One answer per request, in order, on one call. A failed request is answered in-band (<c>status</c>) and the stream
    /// goes on, as TorchServe does: one bad message must not end a client's sequence.
    /// </summary>
    public override async Task StreamPredictions2(IAsyncStreamReader<PredictionsRequest> requestStream, IServerStreamWriter<PredictionResponse> responseStream, ServerCallContext context)
    {
        await foreach (var request in requestStream.ReadAllAsync(context.CancellationToken))
        {
            PredictionResponse response;
            (string Model, InferenceRequest Request)? timed = null;
            try
            {
                (response, var model, var inference) = await PredictAsync(request, context);
                timed = (model, inference);
            }
            catch (Exception e) when (!context.CancellationToken.IsCancellationRequested && GrpcErrors.StatusOf(e, context) is { } status)
            {
                response = new PredictionResponse { Status = GrpcErrors.InBand(status) }; // a failure is answered, not observed
            }
            if (request.HasSequenceId) response.SequenceId = request.SequenceId;
            await responseStream.WriteAsync(response, context.CancellationToken);
            if (timed is { } t) timing.Written(t.Model, t.Request);
        }
    }

    /// <summary>The answer, and the model and request to observe once the caller has handed the answer over.</summary>
    private async Task<(PredictionResponse Response, string Model, InferenceRequest Request)> PredictAsync(PredictionsRequest request, ServerCallContext context)
    {
        // gRPC has read and decoded the message before this runs: read_body here is only its turning into the request.
        var arrived = timing.Arrived();
        if (request.ModelName.Length == 0) throw new BadRequestException("Parameter model_name is required.");
        var model = models.Get(request.ModelName, request.ModelVersion.Length == 0 ? null : request.ModelVersion);
        var inference = ToInferenceRequest(request, context, timing.Clock);
        timing.BodyRead(inference, arrived);
        var result = await models.PredictAsync(model, request.ModelVersion, inference, InferenceProtocol.TorchServeGrpc, context.CancellationToken);
        if (result.StatusCode >= 400) throw GrpcErrors.Failed(result, context);
        // The job's body is its own and never written again: no copy.
        return (new PredictionResponse { Prediction = UnsafeByteOperations.UnsafeWrap(result.Body) }, model.Name, inference);
    }

    // TorchServe passes each input as a named parameter ("data" or "body" is the payload handlers look for), and the
    // call's text metadata as headers; the key stays out of the handler's reach.
    private static InferenceRequest ToInferenceRequest(PredictionsRequest request, ServerCallContext context, TimeProvider clock)
    {
        var parameters = new Dictionary<string, RequestParameter>(request.Input.Count, StringComparer.Ordinal);
        foreach (var (name, value) in request.Input) parameters[name] = new RequestParameter(name, value.Memory);
        return new InferenceRequest(Guid.NewGuid().ToString("N"), parameters, HeadersOf(context)) { Clock = clock };
    }

    /// <summary>The call's text metadata as the handler's headers, without the key.</summary>
    public static Dictionary<string, string> HeadersOf(ServerCallContext context)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var entry in context.RequestHeaders)
        {
            if (!entry.IsBinary && entry.Key != "authorization") headers[entry.Key] = entry.Value;
        }
        return headers;
    }
}
