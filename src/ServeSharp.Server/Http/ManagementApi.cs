using System.Globalization;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Http;

/// <summary>TorchServe's management API: register, scale, describe, list, unregister, set-default.</summary>
internal static class ManagementApi
{
    public static void Map(WebApplication app, ModelManager models, ServerConfig config)
    {
        app.MapGet("/models", (HttpContext http) => Guard(http, () => ListAsync(http, models)));
        app.MapPost("/models", (HttpContext http) => Guard(http, () => RegisterAsync(http, models, config)));
        app.MapGet("/models/{model}/{version?}", (HttpContext http, string model, string? version) => Guard(http, () => DescribeAsync(http, models, model, version)));
        app.MapPut("/models/{model}/{version?}", (HttpContext http, string model, string? version) => Guard(http, () => ScaleAsync(http, models, model, version)));
        app.MapDelete("/models/{model}/{version?}", (HttpContext http, string model, string? version) => Guard(http, () => UnregisterAsync(http, models, config, model, version)));
        app.MapPut("/models/{model}/{version}/set-default", (HttpContext http, string model, string version) => Guard(http, () =>
        {
            models.SetDefault(model, version);
            return Respond.Status(http, 200, $"Default version successfully updated for model \"{model}\" to \"{version}\"");
        }));
        app.MapGet("/api-description", (HttpContext http) => ApiDescription.WriteAsync(http, ApiDescription.Management));
        app.MapMethods("/", ["OPTIONS"], (HttpContext http) => ApiDescription.WriteAsync(http, ApiDescription.Management));
    }

    private static async Task Guard(HttpContext http, Func<Task> action)
    {
        try
        {
            await action();
        }
        catch (ApiException e)
        {
            await Respond.Error(http, e);
        }
    }

    private static Task ListAsync(HttpContext http, ModelManager models)
    {
        var limit = Int(http, "limit") ?? 100;
        var start = Int(http, "next_page_token") ?? 0;
        if (limit < 1 || start < 0) throw new ApiException(400, "limit must be positive and next_page_token non-negative");
        var all = models.ListDefaults();
        var page = all.Skip(start).Take(limit).Select(m => new ModelListEntry(m.Name, m.Url)).ToList();
        var next = start + limit < all.Count ? (start + limit).ToString(CultureInfo.InvariantCulture) : null;
        return Respond.Json(http, 200, new ModelListResponse(page, next), ApiJsonContext.Relaxed.ModelListResponse);
    }

    private static async Task RegisterAsync(HttpContext http, ModelManager models, ServerConfig config)
    {
        RequireModelApi(config);
        var q = http.Request.Query;
        var url = q["url"].ToString();
        if (string.IsNullOrWhiteSpace(url)) throw new ApiException(400, "Parameter url is required.");
        var synchronous = Bool(http, "synchronous") ?? false;
        var (model, started) = await models.RegisterAsync(new RegisterRequest
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

        var workers = model.Settings.MinWorkers;
        if (workers == 0)
            await Respond.Status(http, 200, $"Model \"{model.Name}\" Version: {model.Version} registered with 0 initial workers. Use scale workers API to add workers for the model.");
        else if (!started)
            await Respond.Status(http, 202, "Processing worker updates...");
        else
            await Respond.Status(http, 200, $"Model \"{model.Name}\" Version: {model.Version} registered with {model.ActiveWorkerCount} initial workers");
    }

    private static Task DescribeAsync(HttpContext http, ModelManager models, string name, string? version)
    {
        IReadOnlyList<Model> selected = version == "all" ? models.GetAllVersions(name) : [models.Get(name, version)];
        var memory = Environment.WorkingSet;
        var list = selected.Select(m =>
        {
            var s = m.Settings;
            var pending = m.Queue.Reader.Count;
            return new ModelDescription(
                m.Name, m.Version, m.Url, m.Archive.Manifest.Runtime ?? "python", m.Factory.Description,
                s.MinWorkers, s.MaxWorkers, s.BatchSize, s.MaxBatchDelayMs, s.ResponseTimeoutSeconds,
                models.IsDefault(m), m.LoadedAtStartup, new QueueStatus(Math.Max(0, m.QueueCapacity - pending), pending),
                [.. m.Workers.Select(w => new WorkerDescription(
                    w.Id, w.StartTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture), StatusName(w.Status),
                    memory, Environment.ProcessId, w.GpuId is not null && Sdk.OrtSessionFactory.CudaBuilt, GpuUsage(w.GpuId)))]);
        }).ToList();
        return Respond.Json(http, 200, list, ApiJsonContext.Relaxed.ListModelDescription);
    }

    private static async Task ScaleAsync(HttpContext http, ModelManager models, string name, string? version)
    {
        var model = models.Get(name, version);
        var min = Int(http, "min_worker");
        var max = Int(http, "max_worker");
        _ = Int(http, "timeout"); // workers always finish the batch in hand before stopping; validated for TorchServe parity
        var synchronous = Bool(http, "synchronous") ?? false;
        await models.ScaleAsync(model, min, max, synchronous, http.RequestAborted);
        if (synchronous)
            await Respond.Status(http, 200, $"Workers scaled to {model.ActiveWorkerCount} for model: {model.Name}, version: {model.Version}");
        else
            await Respond.Status(http, 202, "Processing worker updates...");
    }

    private static async Task UnregisterAsync(HttpContext http, ModelManager models, ServerConfig config, string name, string? version)
    {
        RequireModelApi(config);
        await models.UnregisterAsync(name, version);
        await Respond.Status(http, 200, $"Model \"{name}\" unregistered");
    }

    private static void RequireModelApi(ServerConfig config)
    {
        if (!config.EnableModelApi)
            throw new ApiException(405, "Model API is disabled: registering and unregistering models needs --enable-model-api or enable_model_api=true", "MethodNotAllowedException");
    }

    // TorchServe's rule assigns the id either way; a CPU build says where the worker really runs.
    private static string GpuUsage(int? gpu) => gpu switch
    {
        null => "N/A",
        { } g when Sdk.OrtSessionFactory.CudaBuilt => $"gpu {g}",
        { } g => $"assigned gpu {g}; CPU build, running on CPU",
    };

    private static string StatusName(WorkerStatus s) => s switch
    {
        WorkerStatus.Ready => "READY",
        WorkerStatus.Loading => "LOADING",
        WorkerStatus.Stopping => "UNLOADING",
        _ => "STOPPED",
    };

    private static string? NonEmpty(string s) => string.IsNullOrWhiteSpace(s) ? null : s;

    private static int? Int(HttpContext http, string name)
    {
        var text = http.Request.Query[name].ToString();
        if (text.Length == 0) return null;
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
            : throw new ApiException(400, $"Invalid parameter {name}: '{text}' is not an integer");
    }

    private static bool? Bool(HttpContext http, string name)
    {
        var text = http.Request.Query[name].ToString();
        if (text.Length == 0) return null;
        return bool.TryParse(text, out var v) ? v : throw new ApiException(400, $"Invalid parameter {name}: '{text}' is not true or false");
    }
}
