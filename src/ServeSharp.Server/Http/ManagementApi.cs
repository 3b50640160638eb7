using ServeSharp.Server.Configuration;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Http;

/// <summary>
/// TorchServe's management API over REST: register, scale, describe, list, unregister, set-default. Parameters are read
/// as TorchServe reads them (<see cref="ManagementQuery"/>), with its defaults: register is synchronous unless told
/// otherwise, scale is not; scale's min_worker is 1 and max_worker is min_worker when absent.
/// </summary>
internal static class ManagementApi
{
    public static IEnumerable<Route> Routes(ModelManager models, ServerConfig config) =>
    [
        new(Api.Management, "GET", "/models", http => ListAsync(http, models)),
        new(Api.Management, "POST", "/models", http => RegisterAsync(http, models, config)),
        new(Api.Management, "GET", "/models/{model}/{version?}", http => DescribeAsync(http, models, http.RouteString("model")!, http.RouteString("version"))),
        new(Api.Management, "PUT", "/models/{model}/{version?}", http => ScaleAsync(http, models, http.RouteString("model")!, http.RouteString("version"))),
        new(Api.Management, "DELETE", "/models/{model}/{version?}", http => UnregisterAsync(http, models, config, http.RouteString("model")!, http.RouteString("version"))),
        new(Api.Management, "PUT", "/models/{model}/{version}/set-default", http =>
            Respond.Status(http, 200, ManagementActions.SetDefault(models, http.RouteString("model")!, http.RouteString("version")!))),
        new(Api.Management, "GET", "/api-description", http => ApiDescription.WriteAsync(http, ApiDescription.Management), Open: true),
        new(Api.Management, "OPTIONS", "/", http => ApiDescription.WriteAsync(http, ApiDescription.Management), Open: true),
    ];

    private static Task ListAsync(HttpContext http, ModelManager models)
    {
        var q = ManagementQuery.For(http);
        return Respond.Json(http, 200, ManagementActions.List(models, q.Int("limit"), q.Int("next_page_token"), q.Logger), ApiJsonContext.Relaxed.ModelListResponse);
    }

    private static async Task RegisterAsync(HttpContext http, ModelManager models, ServerConfig config)
    {
        var q = ManagementQuery.For(http);
        var outcome = await ManagementActions.RegisterAsync(models, config, new ManagementActions.RegisterParameters
        {
            Url = q.String("url"),
            ModelName = q.String("model_name"),
            Runtime = q.String("runtime"),
            Handler = q.String("handler"),
            BatchSize = q.Int("batch_size"),
            MaxBatchDelay = q.Int("max_batch_delay"),
            InitialWorkers = q.Int("initial_workers"),
            ResponseTimeout = q.Int("response_timeout"),
            StartupTimeout = q.Int("startup_timeout"),
            Synchronous = q.Bool("synchronous", absent: true),
        }, q.Logger, http.RequestAborted);
        await Respond.Status(http, outcome.Status, outcome.Message);
    }

    private static async Task DescribeAsync(HttpContext http, ModelManager models, string name, string? version)
    {
        var q = ManagementQuery.For(http);
        var described = await ManagementActions.DescribeAsync(models, name, version, q.Bool("customized", absent: false), q.Logger, http.RequestAborted);
        await Respond.Json(http, 200, described, ApiJsonContext.Relaxed.ListModelDescription);
    }

    // TorchServe reads neither timeout nor number_gpu here: they are accepted and ignored.
    private static async Task ScaleAsync(HttpContext http, ModelManager models, string name, string? version)
    {
        var q = ManagementQuery.For(http);
        var min = q.Int("min_worker") ?? 1;
        var max = q.Int("max_worker") ?? min;
        version ??= q.String("model_version");
        var outcome = await ManagementActions.ScaleAsync(models, name, version, min, max, q.Bool("synchronous", absent: false), http.RequestAborted);
        await Respond.Status(http, outcome.Status, outcome.Message);
    }

    private static async Task UnregisterAsync(HttpContext http, ModelManager models, ServerConfig config, string name, string? version) =>
        await Respond.Status(http, 200, await ManagementActions.UnregisterAsync(models, config, name, version));
}
