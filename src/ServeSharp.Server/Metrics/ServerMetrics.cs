using System.Text;
using Prometheus;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Metrics;

/// <summary>
/// TorchServe's metrics, by its names and labels, in a registry of their own (so the scrape holds only these).
/// Counters accumulate; the *Time gauges hold the latest value in milliseconds, as TorchServe reports them.
/// </summary>
internal sealed class ServerMetrics
{
    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();
    private readonly string _host = Environment.MachineName;
    private readonly Counter _requests;
    private readonly Counter _latency;
    private readonly Counter _queueLatency;
    private readonly Counter _requests2xx;
    private readonly Counter _requests4xx;
    private readonly Counter _requests5xx;
    private readonly Gauge _queueTime;
    private readonly Gauge _workerThreadTime;
    private readonly Gauge _workerLoadTime;
    private readonly Gauge _handlerTime;
    private readonly Gauge _predictionTime;
    private readonly Histogram _batchSize;
    private readonly Counter _workerRestarts;

    // InferenceProtocol's values, in order, as the protocol label spells them.
    private static readonly string[] ProtocolLabels = ["torchserve_rest", "torchserve_grpc", "kserve_v1", "oip_v2_rest", "oip_v2_grpc"];

    public ServerMetrics()
    {
        var f = Prometheus.Metrics.WithCustomRegistry(_registry);
        string[] model = ["model_name", "model_version", "hostname"];
        string[] host = ["Level", "Hostname"];
        string[] modelHost = ["ModelName", "Level", "Hostname"];
        // TorchServe's labels plus the protocol the request came in by (one job path serves them all).
        string[] byProtocol = [.. model, "protocol"];
        _requests = f.CreateCounter("ts_inference_requests_total", "Total number of inference requests.", byProtocol);
        _latency = f.CreateCounter("ts_inference_latency_microseconds", "Cumulative inference duration in microseconds", byProtocol);
        _queueLatency = f.CreateCounter("ts_queue_latency_microseconds", "Cumulative queue duration in microseconds", byProtocol);
        _requests2xx = f.CreateCounter("Requests2XX", "Total number of requests with response in 200-300 status code range", host);
        _requests4xx = f.CreateCounter("Requests4XX", "Total number of requests with response in 400-500 status code range", host);
        _requests5xx = f.CreateCounter("Requests5XX", "Total number of requests with response status code above 500", host);
        _queueTime = f.CreateGauge("QueueTime", "Time spent by a job in request queue in Milliseconds", host);
        _workerThreadTime = f.CreateGauge("WorkerThreadTime", "Time spent in worker thread excluding backend response time in Milliseconds", host);
        _workerLoadTime = f.CreateGauge("WorkerLoadTime", "Time taken by worker to load model in Milliseconds", ["WorkerName", "Level", "Hostname"]);
        _handlerTime = f.CreateGauge("HandlerTime", "Backend time spent in the handler in Milliseconds", modelHost);
        _predictionTime = f.CreateGauge("PredictionTime", "Backend prediction time in Milliseconds", modelHost);
        // Not one of TorchServe's: how full the batches its aggregator forms are (the point of batchSize/maxBatchDelay).
        _batchSize = f.CreateHistogram("ts_batch_size", "Requests per batch handed to a worker", new HistogramConfiguration
        {
            LabelNames = model,
            Buckets = [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 64],
        });
        // Not one of TorchServe's either: workers that died, timed out or failed to load, each of which the pool replaces.
        _workerRestarts = f.CreateCounter("ts_worker_restarts_total", "Workers lost (crashed, killed, failed to load) and replaced", model);
        AddGpuMetrics(f);
    }

    // TorchServe's GPU metrics, per device, read from NVML at each scrape. Absent (not zero) where there is no GPU.
    private void AddGpuMetrics(MetricFactory f)
    {
        var (devices, _) = Configuration.Nvml.DeviceCount();
        if (devices == 0) return;
        string[] labels = ["Level", "DeviceId", "Hostname"];
        var memoryUtilization = f.CreateGauge("GPUMemoryUtilization", "GPU memory used, in percent of the device's", labels);
        var memoryUsed = f.CreateGauge("GPUMemoryUsed", "GPU memory used, in megabytes", labels);
        var utilization = f.CreateGauge("GPUUtilization", "GPU busy time over the last sample period, in percent", labels);
        _registry.AddBeforeCollectCallback(() =>
        {
            for (var i = 0; i < devices; i++)
            {
                if (Configuration.Nvml.Sample(i) is not var (memory, busy)) continue;
                var id = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
                memoryUtilization.WithLabels("Host", id, _host).Set(memory.Total == 0 ? 0 : 100.0 * memory.Used / memory.Total);
                memoryUsed.WithLabels("Host", id, _host).Set(memory.Used / (1024.0 * 1024.0));
                utilization.WithLabels("Host", id, _host).Set(busy.Gpu);
            }
        });
    }

    public void RequestCompleted(int statusCode)
    {
        var counter = statusCode switch { < 400 => _requests2xx, < 500 => _requests4xx, _ => _requests5xx };
        counter.WithLabels("Host", _host).Inc();
    }

    /// <summary>A prediction answered by a worker: TorchServe counts it and its latencies per model version.</summary>
    public void InferenceCompleted(string model, string version, InferenceProtocol protocol, TimeSpan total, TimeSpan queued)
    {
        var by = ProtocolLabels[(int)protocol];
        _requests.WithLabels(model, version, _host, by).Inc();
        _latency.WithLabels(model, version, _host, by).Inc(total.TotalMicroseconds);
        _queueLatency.WithLabels(model, version, _host, by).Inc(queued.TotalMicroseconds);
        _queueTime.WithLabels("Host", _host).Set(queued.TotalMilliseconds);
    }

    public void BatchHandled(string model, TimeSpan handler, TimeSpan workerOverhead)
    {
        _handlerTime.WithLabels(model, "Model", _host).Set(handler.TotalMilliseconds);
        _predictionTime.WithLabels(model, "Model", _host).Set(handler.TotalMilliseconds);
        _workerThreadTime.WithLabels("Host", _host).Set(workerOverhead.TotalMilliseconds);
    }

    public void BatchFormed(string model, string version, int size) => _batchSize.WithLabels(model, version, _host).Observe(size);

    public void WorkerLost(string model, string version) => _workerRestarts.WithLabels(model, version, _host).Inc();

    public void WorkerLoaded(string workerName, TimeSpan took) =>
        _workerLoadTime.WithLabels(workerName, "Host", _host).Set(took.TotalMilliseconds);

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
