using System.Text.Json;
using Grpc.Core;
using Org.Pytorch.Serve.Grpc.Management;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Http;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Grpc;

/// <summary>
/// TorchServe's gRPC management API: the REST management API's actions (<see cref="ManagementActions"/>), answering
/// its status text or JSON in <c>msg</c>. proto3 sends 0 and "" for what the client left out; as in TorchServe
/// (GRPCUtils.getRegisterParam), a number that is not positive and an empty string take the default a REST call
/// without the parameter gets (scaling: min 1, max = min).
/// </summary>
internal sealed class ManagementService(ModelManager models, ServerConfig config, ILoggerFactory loggers) : ManagementAPIsService.ManagementAPIsServiceBase
{
    private readonly ILogger _logger = loggers.CreateLogger(ManagementLog.Category);

    public override async Task<ManagementResponse> DescribeModel(DescribeModelRequest request, ServerCallContext context)
    {
        var described = await ManagementActions.DescribeAsync(models, request.ModelName, Text(request.ModelVersion), request.Customized, _logger, context.CancellationToken);
        return new ManagementResponse { Msg = JsonSerializer.Serialize(described, ApiJsonContext.Relaxed.ListModelDescription) };
    }

    public override Task<ManagementResponse> ListModels(ListModelsRequest request, ServerCallContext context) =>
        Answer(JsonSerializer.Serialize(ManagementActions.List(models, Positive(request.Limit), Positive(request.NextPageToken), _logger),
            ApiJsonContext.Relaxed.ModelListResponse));

    public override async Task<ManagementResponse> RegisterModel(RegisterModelRequest request, ServerCallContext context)
    {
        var outcome = await ManagementActions.RegisterAsync(models, config, new ManagementActions.RegisterParameters
        {
            Url = Text(request.Url),
            ModelName = Text(request.ModelName),
            Runtime = Text(request.Runtime),
            Handler = Text(request.Handler),
            BatchSize = Positive(request.BatchSize),
            MaxBatchDelay = Positive(request.MaxBatchDelay),
            InitialWorkers = Positive(request.InitialWorkers),
            ResponseTimeout = Positive(request.ResponseTimeout),
            Synchronous = request.Synchronous,
        }, _logger, context.CancellationToken);
        return new ManagementResponse { Msg = outcome.Message };
    }

    public override async Task<ManagementResponse> ScaleWorker(ScaleWorkerRequest request, ServerCallContext context)
    {
        var min = Positive(request.MinWorker) ?? 1;
        var outcome = await ManagementActions.ScaleAsync(models, request.ModelName, Text(request.ModelVersion), min, Positive(request.MaxWorker) ?? min,
            request.Synchronous, context.CancellationToken);
        return new ManagementResponse { Msg = outcome.Message };
    }

    public override Task<ManagementResponse> SetDefault(SetDefaultRequest request, ServerCallContext context) =>
        Answer(ManagementActions.SetDefault(models, request.ModelName, request.ModelVersion));

    public override async Task<ManagementResponse> UnregisterModel(UnregisterModelRequest request, ServerCallContext context)
    {
        if (request.ModelName.Length == 0) throw new BadRequestException("Parameter model_name is required.");
        return new ManagementResponse { Msg = await ManagementActions.UnregisterAsync(models, config, request.ModelName, Text(request.ModelVersion)) };
    }

    private static Task<ManagementResponse> Answer(string msg) => Task.FromResult(new ManagementResponse { Msg = msg });

    private static string? Text(string value) => value.Length == 0 ? null : value;

    private static int? Positive(int value) => value > 0 ? value : null;
}
