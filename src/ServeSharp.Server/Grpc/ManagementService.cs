using System.Text.Json;
using Grpc.Core;
using Org.Pytorch.Serve.Grpc.Management;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Http;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Grpc;

/// <summary>
/// TorchServe's gRPC management API: the REST management API's actions (<see cref="ManagementActions"/>), answering
/// its status text or JSON in <c>msg</c>. proto3 sends 0 and "" for what the client left out; those take the same
/// defaults a REST call without the parameter gets (and TorchServe's for scaling: min 1, max = min).
/// </summary>
internal sealed class ManagementService(ModelManager models, ServerConfig config) : ManagementAPIsService.ManagementAPIsServiceBase
{
    public override Task<ManagementResponse> DescribeModel(DescribeModelRequest request, ServerCallContext context) =>
        Answer(JsonSerializer.Serialize(ManagementActions.Describe(models, request.ModelName, Version(request.ModelVersion)), ApiJsonContext.Relaxed.ListModelDescription));

    public override Task<ManagementResponse> ListModels(ListModelsRequest request, ServerCallContext context) =>
        Answer(JsonSerializer.Serialize(ManagementActions.List(models, Positive(request.Limit), request.NextPageToken == 0 ? null : request.NextPageToken),
            ApiJsonContext.Relaxed.ModelListResponse));

    public override async Task<ManagementResponse> RegisterModel(RegisterModelRequest request, ServerCallContext context)
    {
        ManagementActions.RequireRegistration(config, request.Url);
        var outcome = await ManagementActions.RegisterAsync(models, new RegisterRequest
        {
            Url = request.Url,
            ModelName = NonEmpty(request.ModelName),
            Handler = NonEmpty(request.Handler),
            BatchSize = Positive(request.BatchSize),
            MaxBatchDelay = Positive(request.MaxBatchDelay),
            InitialWorkers = Positive(request.InitialWorkers),
            ResponseTimeout = Positive(request.ResponseTimeout),
            Synchronous = request.Synchronous,
        }, context.CancellationToken);
        return new ManagementResponse { Msg = outcome.Message };
    }

    public override async Task<ManagementResponse> ScaleWorker(ScaleWorkerRequest request, ServerCallContext context)
    {
        var model = models.Get(request.ModelName, Version(request.ModelVersion));
        var min = Positive(request.MinWorker) ?? 1;
        var outcome = await ManagementActions.ScaleAsync(models, model, min, Positive(request.MaxWorker) ?? min, request.Synchronous, context.CancellationToken);
        return new ManagementResponse { Msg = outcome.Message };
    }

    public override Task<ManagementResponse> SetDefault(SetDefaultRequest request, ServerCallContext context) =>
        Answer(ManagementActions.SetDefault(models, request.ModelName, request.ModelVersion));

    public override async Task<ManagementResponse> UnregisterModel(UnregisterModelRequest request, ServerCallContext context)
    {
        if (request.ModelName.Length == 0) throw new BadRequestException("Parameter model_name is required.");
        return new ManagementResponse { Msg = await ManagementActions.UnregisterAsync(models, config, request.ModelName, Version(request.ModelVersion)) };
    }

    private static Task<ManagementResponse> Answer(string msg) => Task.FromResult(new ManagementResponse { Msg = msg });

    private static string? Version(string version) => version.Length == 0 ? null : version;

    private static string? NonEmpty(string s) => string.IsNullOrWhiteSpace(s) ? null : s;

    // Negative values are the client's mistake, and reach the same checks a REST call's would.
    private static int? Positive(int value) => value == 0 ? null : value;
}
