using System.Text;
using Prometheus;
using ServeSharp.Sdk;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Logging;
using ServeSharp.Server.Wlm;
using static ServeSharp.Server.Metrics.Dimension;

namespace ServeSharp.Server.Metrics;

/// <summary>
/// TorchServe's metrics, as metrics.yaml defines them (which exist, their type, unit and dimensions), in a Prometheus
/// registry of their own for the metrics API; with <c>metrics_mode=log</c> every update is also a line in ts_metrics.log
/// (model metrics: model_metrics.log), as TorchServe's LogMetric writes them. The points that measure call the methods
/// below by meaning; a metric metrics.yaml leaves out is simply not updated.
/// </summary>
internal sealed class ServerMetrics
{
    private static readonly Dimension[] HostLevel = [Level, Hostname];
    private static readonly Dimension[] PerRequest = [ModelName, ModelVersion, Hostname, Protocol];
    private static readonly Dimension[] PerVersion = [ModelName, ModelVersion, Hostname];
    private static readonly Dimension[] PerDevice = [Level, DeviceId, Hostname];
    private static readonly Dimension[] PerModel = [ModelName, Level, Hostname];

    // What ServeSharp measures, by TorchServe's names, with the dimensions it can fill for each; model metrics are
    // TorchServe's backend (model_metrics) ones.
    private static readonly Dictionary<string, (bool Model, Dimension[] Dimensions)> Measured = new(StringComparer.Ordinal)
    {
        ["Requests2XX"] = (false, HostLevel), ["Requests4XX"] = (false, HostLevel), ["Requests5XX"] = (false, HostLevel),
        ["ts_inference_requests_total"] = (false, PerRequest), ["ts_inference_latency_microseconds"] = (false, PerRequest),
        ["ts_queue_latency_microseconds"] = (false, PerRequest),
        ["QueueTime"] = (false, HostLevel), ["WorkerThreadTime"] = (false, HostLevel), ["WorkerLoadTime"] = (false, [WorkerName, Level, Hostname]),
        ["CPUUtilization"] = (false, HostLevel), ["MemoryUsed"] = (false, HostLevel), ["MemoryAvailable"] = (false, HostLevel),
        ["MemoryUtilization"] = (false, HostLevel), ["DiskUsage"] = (false, HostLevel), ["DiskUtilization"] = (false, HostLevel),
        ["DiskAvailable"] = (false, HostLevel),
        ["GPUMemoryUtilization"] = (false, PerDevice), ["GPUMemoryUsed"] = (false, PerDevice), ["GPUUtilization"] = (false, PerDevice),
        ["ts_batch_size"] = (false, PerVersion), ["ts_worker_restarts_total"] = (false, PerVersion),
        ["HandlerTime"] = (true, PerModel), ["PredictionTime"] = (true, PerModel),
    };

    // InferenceProtocol's values, in order, as the protocol dimension spells them.
    private static readonly string[] ProtocolLabels = ["torchserve_rest", "torchserve_grpc", "kserve_v1", "oip_v2_rest", "oip_v2_grpc"];

    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();
    private readonly Dictionary<string, ConfiguredMetric> _metrics = new(StringComparer.Ordinal);
    private readonly string _host = Environment.MachineName;
    private readonly RequestStages _stages;

    public ServerMetrics(MetricsConfiguration configuration, ServerConfig config, TimeProvider time, ILoggerFactory loggers)
    {
        var mode = config.MetricsMode;
        var factory = Prometheus.Metrics.WithCustomRegistry(_registry);
        ILogger? tsMetrics = mode == MetricsMode.Log ? loggers.CreateLogger(LogFiles.TsMetrics) : null;
        ILogger? modelMetrics = mode == MetricsMode.Log ? loggers.CreateLogger(LogFiles.ModelMetrics) : null;
        foreach (var spec in configuration.Metrics)
        {
            if (DimensionsOf(spec, configuration.Source) is not { } dimensions) continue;
            // The batch-size histogram keeps buckets that mean something for batch sizes.
            double[]? buckets = spec.Name == "ts_batch_size" ? [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 64] : null;
            _metrics[spec.Name] = new ConfiguredMetric(spec, dimensions, factory, spec.Model ? modelMetrics : tsMetrics, time, buckets);
        }
        Warnings = Check(configuration);
        _stages = new RequestStages(factory);
    }

    /// <summary>A prediction answered over any inference API: where its time went, stage by stage (ServeSharp's own histograms).</summary>
    public void RequestServed(string model, InferenceRequest request) => _stages.Observe(model, request);

    /// <summary>What metrics.yaml asked for that ServeSharp does not measure (logged once at start).</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>
    /// Whether ServeSharp can serve <paramref name="configuration"/>: throws (naming the file) for a dimension it cannot
    /// fill; returns a warning for each metric it does not measure. The command line checks this before it starts.
    /// </summary>
    public static IReadOnlyList<string> Check(MetricsConfiguration configuration)
    {
        var warnings = new List<string>();
        foreach (var spec in configuration.Metrics)
        {
            if (DimensionsOf(spec, configuration.Source) is null)
                warnings.Add($"metrics_config {configuration.Source}: ServeSharp does not measure {(spec.Model ? "model" : "ts")} metric {spec.Name}; it is left out");
        }
        return warnings;
    }

    // The dimensions of a metric ServeSharp measures, in metrics.yaml's order; null for one it does not measure.
    private static Dimension[]? DimensionsOf(MetricSpec spec, string source)
    {
        if (!Measured.TryGetValue(spec.Name, out var measured) || measured.Model != spec.Model) return null;
        var dimensions = new Dimension[spec.Dimensions.Count];
        for (var i = 0; i < dimensions.Length; i++)
        {
            dimensions[i] = MetricDimensions.Parse(spec.Dimensions[i]) is { } d && measured.Dimensions.Contains(d) ? d
                : throw new FormatException($"metrics_config {source}: {spec.Name} has dimension '{spec.Dimensions[i]}', which ServeSharp cannot fill for it (it can: {string.Join(", ", measured.Dimensions)})");
        }
        return dimensions;
    }

    private void Update(string name, in MetricDimensions dimensions, double value, IReadOnlyList<InferenceRequest>? requests = null)
    {
        if (_metrics.TryGetValue(name, out var metric)) metric.Update(dimensions, value, requests);
    }

    /// <summary>An answered request on any API but the metrics API's (TorchServe's Requests2XX/4XX/5XX).</summary>
    public void RequestCompleted(int statusCode) =>
        Update(statusCode switch { < 400 => "Requests2XX", < 500 => "Requests4XX", _ => "Requests5XX" }, new(_host, Level: "Host"), 1);

    /// <summary>
    /// A prediction received for a model (TorchServe counts it before it is queued). <paramref name="versionLabel"/> is
    /// what TorchServe prints: the version the request named, or "default".
    /// </summary>
    public void InferenceReceived(string model, string versionLabel, InferenceProtocol protocol) =>
        Update("ts_inference_requests_total", new(_host, ModelName: model, ModelVersion: versionLabel, Protocol: ProtocolLabels[(int)protocol]), 1);

    /// <summary>A prediction a worker answered: its latency and time in the queue.</summary>
    public void InferenceCompleted(string model, string versionLabel, InferenceProtocol protocol, TimeSpan total, TimeSpan queued)
    {
        var request = new MetricDimensions(_host, ModelName: model, ModelVersion: versionLabel, Protocol: ProtocolLabels[(int)protocol]);
        Update("ts_inference_latency_microseconds", request, total.TotalMicroseconds);
        Update("ts_queue_latency_microseconds", request, queued.TotalMicroseconds);
        // TorchServe's QueueTime is whole milliseconds.
        Update("QueueTime", new(_host, Level: "Host"), Math.Floor(queued.TotalMilliseconds));
    }

    /// <summary>A batch the handler answered: TorchServe's backend metrics (in ms, to two decimals) and the worker's own time.</summary>
    public void BatchHandled(string model, TimeSpan handler, TimeSpan workerOverhead, IReadOnlyList<InferenceRequest> requests)
    {
        var milliseconds = Math.Round(handler.TotalMilliseconds, 2);
        var dimensions = new MetricDimensions(_host, Level: "Model", ModelName: model);
        Update("HandlerTime", dimensions, milliseconds, requests);
        Update("PredictionTime", dimensions, milliseconds, requests);
        Update("WorkerThreadTime", new(_host, Level: "Host"), Math.Floor(workerOverhead.TotalMilliseconds));
    }

    public void BatchFormed(string model, string version, int size) =>
        Update("ts_batch_size", new(_host, ModelName: model, ModelVersion: version), size);

    public void WorkerLost(string model, string version) =>
        Update("ts_worker_restarts_total", new(_host, ModelName: model, ModelVersion: version), 1);

    public void WorkerLoaded(string workerName, TimeSpan took) =>
        Update("WorkerLoadTime", new(_host, Level: "Host", WorkerName: workerName), Math.Floor(took.TotalMilliseconds));

    /// <summary>One collection of TorchServe's host metrics (CPU, memory, disk).</summary>
    public void SystemSampled(SystemSample sample)
    {
        var host = new MetricDimensions(_host, Level: "Host");
        Update("CPUUtilization", host, sample.CpuUtilization);
        Update("MemoryUsed", host, sample.MemoryUsedMegabytes);
        Update("MemoryAvailable", host, sample.MemoryAvailableMegabytes);
        Update("MemoryUtilization", host, sample.MemoryUtilization);
        Update("DiskUsage", host, sample.DiskUsedGigabytes);
        Update("DiskAvailable", host, sample.DiskAvailableGigabytes);
        Update("DiskUtilization", host, sample.DiskUtilization);
    }

    /// <summary>One collection of a GPU's metrics (percent, megabytes, percent).</summary>
    public void GpuSampled(int device, double memoryUtilization, double memoryUsedMegabytes, double utilization)
    {
        var gpu = new MetricDimensions(_host, Level: "Host", DeviceId: device.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Update("GPUMemoryUtilization", gpu, memoryUtilization);
        Update("GPUMemoryUsed", gpu, memoryUsedMegabytes);
        Update("GPUUtilization", gpu, utilization);
    }

    /// <summary>The Prometheus text exposition, optionally only the families named (TorchServe's <c>?name[]=</c>).</summary>
    public async Task<string> ExportAsync(IReadOnlyCollection<string> names, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        await _registry.CollectAndExportAsTextAsync(buffer, cancellationToken);
        var text = Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
        return names.Count == 0 ? text : Filter(text, names);
    }

    // A family is its "# HELP name", "# TYPE name" lines and the samples that follow.
    private static string Filter(string text, IReadOnlyCollection<string> names)
    {
        var output = new StringBuilder();
        var keep = false;
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("# HELP ", StringComparison.Ordinal))
            {
                var name = line[7..].Split(' ', 2)[0];
                keep = names.Contains(name);
            }
            if (keep && line.Length > 0) output.Append(line).Append('\n');
        }
        return output.ToString();
    }
}

/// <summary>metrics_mode: <c>log</c> (TorchServe's default: metrics also written to ts_metrics.log and model_metrics.log)
/// or <c>prometheus</c> (the metrics API only). The metrics API answers in both.</summary>
internal enum MetricsMode { Log, Prometheus }
