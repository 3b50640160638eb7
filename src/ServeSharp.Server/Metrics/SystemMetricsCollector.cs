using Microsoft.Extensions.Hosting;
using ServeSharp.Server.Configuration;

namespace ServeSharp.Server.Metrics;

/// <summary>
/// Collects TorchServe's system metrics (CPU, memory, disk and, where NVML finds GPUs, the GPU metrics) at start and
/// then every <c>metric_time_interval</c> seconds (TorchServe: 60), on the host's TimeProvider; off with
/// <c>disable_system_metrics=true</c>. The values stand on the metrics API until the next collection, and in log mode
/// each collection writes its lines to ts_metrics.log.
/// </summary>
internal sealed partial class SystemMetricsCollector(ServerConfig config, ServerMetrics metrics, TimeProvider time, ILogger<SystemMetricsCollector> logger)
    : IHostedService, IDisposable
{
    private readonly SystemMetrics _system = new();
    private readonly Lock _gate = new();
    private readonly int _gpus = Nvml.DeviceCount().Count;
    private ITimer? _timer;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (config.DisableSystemMetrics) return Task.CompletedTask;
        // As TorchServe schedules it: the first collection at once, then one per interval.
        Collect();
        var interval = TimeSpan.FromSeconds(config.MetricTimeInterval);
        _timer = time.CreateTimer(_ => Collect(), null, interval, interval);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose() => _timer?.Dispose();

    private void Collect()
    {
        // One collection at a time: a slow disk must not let two readings interleave their CPU baselines.
        lock (_gate)
        {
            try
            {
                metrics.SystemSampled(_system.Sample());
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                LogUnreadable(logger, e);
            }
            for (var i = 0; i < _gpus; i++)
            {
                if (Nvml.Sample(i) is not var (memory, busy)) continue;
                metrics.GpuSampled(i, memory.Total == 0 ? 0 : 100.0 * memory.Used / memory.Total, memory.Used / (1024.0 * 1024.0), busy.Gpu);
            }
        }
    }

    [LoggerMessage(EventId = 9002, Level = LogLevel.Warning, Message = "System metrics could not be read")]
    private static partial void LogUnreadable(ILogger logger, Exception error);
}
