using System.Globalization;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Http;

/// <summary>TorchServe's management API over REST: register, scale, describe, list, unregister, set-default.</summary>
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

    private static Task ListAsync(HttpContext http, ModelManager models) =>
        Respond.Json(http, 200, ManagementActions.List(models, Int(http, "limit"), Int(http, "next_page_token")), ApiJsonContext.Relaxed.ModelListResponse);

    private static async Task RegisterAsync(HttpContext http, ModelManager models, ServerConfig config)
    {
        var q = http.Request.Query;
        var url = q["url"].ToString();
        ManagementActions.RequireRegistration(config, url);
        var synchronous = Bool(http, "synchronous") ?? false;
        var outcome = await ManagementActions.RegisterAsync(models, new RegisterRequest
        {
            Url = url,
            ModelName = NonEmpty(q["model_name"].ToString()),
            Handler = NonEmpty(q["handler"].ToString()),
            BatchSize = Int(http, "batch_size"),
            MaxBatchDelay = Int(http, "max_batch_delay"),
            InitialWorkers = Int(http, "initial_workers"),
            ResponseTimeout = Int(http, "response_timeout"),
            Synchronous = synchronous,
        }, http.RequestAborted);
        await Respond.Status(http, outcome.Status, outcome.Message);
    }

    private static Task DescribeAsync(HttpContext http, ModelManager models, string name, string? version) =>
        Respond.Json(http, 200, ManagementActions.Describe(models, name, version), ApiJsonContext.Relaxed.ListModelDescription);

    private static async Task ScaleAsync(HttpContext http, ModelManager models, string name, string? version)
    {
        var model = models.Get(name, version);
        var min = Int(http, "min_worker");
        var max = Int(http, "max_worker");
        _ = Int(http, "timeout"); // workers always finish the batch in hand before stopping; validated for TorchServe parity
        var synchronous = Bool(http, "synchronous") ?? false;
        var outcome = await ManagementActions.ScaleAsync(models, model, min, max, synchronous, http.RequestAborted);
        await Respond.Status(http, outcome.Status, outcome.Message);
    }

    private static async Task UnregisterAsync(HttpContext http, ModelManager models, ServerConfig config, string name, string? version) =>
        await Respond.Status(http, 200, await ManagementActions.UnregisterAsync(models, config, name, version));

    private static string? NonEmpty(string s) => string.IsNullOrWhiteSpace(s) ? null : s;

    private static int? Int(HttpContext http, string name)
    {
        var text = http.Request.Query[name].ToString();
        if (text.Length == 0) return null;
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
            : throw new BadRequestException($"Invalid parameter {name}: '{text}' is not an integer");
    }

    private static bool? Bool(HttpContext http, string name)
    {
        var text = http.Request.Query[name].ToString();
        if (text.Length == 0) return null;
        return bool.TryParse(text, out var v) ? v : throw new BadRequestException($"Invalid parameter {name}: '{text}' is not true or false");
    }
}
