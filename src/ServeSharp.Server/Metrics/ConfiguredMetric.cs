using System.Globalization;
using System.Text;
using Prometheus;
using ServeSharp.Sdk;

namespace ServeSharp.Server.Metrics;

/// <summary>
/// One metric as metrics.yaml defines it: a Prometheus collector of its type, with its dimensions as labels, for the
/// metrics API; in log mode each update is also written as TorchServe's LogMetric writes it,
/// <c>Name.Unit:value|#Dim:value,...|#hostname:host[,requestID:ids],timestamp:seconds</c>.
/// </summary>
internal sealed partial class ConfiguredMetric
{
    private readonly Dimension[] _dimensions;
    private readonly Collector _collector;
    private readonly ILogger? _log;
    private readonly TimeProvider _time;

    public ConfiguredMetric(MetricSpec spec, Dimension[] dimensions, MetricFactory factory, ILogger? log, TimeProvider time, double[]? buckets = null)
    {
        Spec = spec;
        _dimensions = dimensions;
        _log = log;
        _time = time;
        // TorchServe's help text: the unit is in it, and nowhere else in the exposition.
        var help = $"Torchserve prometheus {spec.Type.ToString().ToLowerInvariant()} metric with unit: {spec.Unit}";
        var labels = spec.Dimensions.ToArray();
        _collector = spec.Type switch
        {
            MetricType.Counter => factory.CreateCounter(spec.Name, help, labels),
            MetricType.Gauge => factory.CreateGauge(spec.Name, help, labels),
            _ => factory.CreateHistogram(spec.Name, help, new HistogramConfiguration { LabelNames = labels, Buckets = buckets }),
        };
    }

    public MetricSpec Spec { get; }

    /// <summary>Counters add <paramref name="value"/>, gauges take it, histograms observe it (as TorchServe's addOrUpdate).</summary>
    /// <param name="requests">The requests a model metric was measured on (model_metrics.log names them).</param>
    public void Update(in MetricDimensions values, double value, IReadOnlyList<InferenceRequest>? requests = null)
    {
        var labels = new string[_dimensions.Length];
        for (var i = 0; i < labels.Length; i++) labels[i] = values[_dimensions[i]] ?? "";
        switch (_collector)
        {
            case Counter counter: counter.WithLabels(labels).Inc(value); break;
            case Gauge gauge: gauge.WithLabels(labels).Set(value); break;
            case Histogram histogram: histogram.WithLabels(labels).Observe(value); break;
        }
        if (_log is null || !_log.IsEnabled(LogLevel.Information)) return;
        var line = Line(labels, values.Hostname, value, requests);
        LogLine(_log, line);
    }

    private string Line(string[] labels, string hostname, double value, IReadOnlyList<InferenceRequest>? requests)
    {
        var line = new StringBuilder(128).Append(Spec.Name).Append('.').Append(Spec.Unit).Append(':').Append(JavaDouble.Format(value)).Append("|#");
        var first = true;
        for (var i = 0; i < labels.Length; i++)
        {
            if (_dimensions[i] == Dimension.Hostname) continue; // it has a section of its own
            if (!first) line.Append(',');
            line.Append(Spec.Dimensions[i]).Append(':').Append(labels[i]);
            first = false;
        }
        line.Append("|#hostname:").Append(hostname);
        if (requests is not null)
        {
            // The batch's request ids, comma-separated, as TorchServe's backend reports them.
            line.Append(",requestID:");
            for (var i = 0; i < requests.Count; i++) line.Append(i == 0 ? "" : ",").Append(requests[i].RequestId);
        }
        return line.Append(",timestamp:").Append(_time.GetUtcNow().ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture)).ToString();
    }

    [LoggerMessage(EventId = 9001, Level = LogLevel.Information, Message = "{Line}")]
    private static partial void LogLine(ILogger logger, string line);
}
