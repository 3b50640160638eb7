using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace ServeSharp.Server.Metrics;

/// <summary>TorchServe's metric types, as metrics.yaml lists them.</summary>
internal enum MetricType { Counter, Gauge, Histogram }

/// <summary>One metric of metrics.yaml: <paramref name="Model"/> for <c>model_metrics</c> (TorchServe's backend metrics).</summary>
internal sealed record MetricSpec(string Name, string Unit, MetricType Type, IReadOnlyList<string> Dimensions, bool Model);

/// <summary>
/// metrics.yaml in TorchServe's format (<c>dimensions</c> aliases, <c>ts_metrics</c> and <c>model_metrics</c>, each with
/// <c>counter</c>, <c>gauge</c> and <c>histogram</c> lists of name, unit and dimensions): which metrics exist and with
/// which dimensions. Read with YamlDotNet's representation model, which resolves the <c>*alias</c> references. A file
/// TorchServe would refuse (unknown keys, a metric without name or unit) stops the start with a message naming it.
/// </summary>
internal sealed record MetricsConfiguration(IReadOnlyList<MetricSpec> Metrics, string Source)
{
    /// <summary>metrics_config's file, or ServeSharp's default (TorchServe's default metrics.yaml and our additions).</summary>
    public static MetricsConfiguration Load(string? path)
    {
        if (path is null)
        {
            using var stream = typeof(MetricsConfiguration).Assembly.GetManifestResourceStream("ServeSharp.Server.Metrics.metrics.yaml")!;
            return Parse(new StreamReader(stream).ReadToEnd(), "the default metrics.yaml");
        }
        var full = Path.GetFullPath(path);
        if (!File.Exists(full)) throw new FormatException($"metrics_config {full}: file not found");
        return Parse(File.ReadAllText(full), full);
    }

    public static MetricsConfiguration Parse(string text, string source)
    {
        var yaml = new YamlStream();
        try
        {
            yaml.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw Error(source, $"invalid YAML at line {e.Start.Line}: {e.Message}");
        }
        if (yaml.Documents.Count == 0 || yaml.Documents[0].RootNode is not YamlMappingNode root)
            throw Error(source, "expected a mapping with dimensions, ts_metrics and model_metrics");

        var metrics = new List<MetricSpec>();
        foreach (var (key, value) in root.Children)
        {
            switch (Scalar(key))
            {
                case "dimensions": break; // only the aliases' anchors; each metric names its own
                case "ts_metrics": Section(value, model: false, metrics, source); break;
                case "model_metrics": Section(value, model: true, metrics, source); break;
                default: throw Error(source, $"line {key.Start.Line}: unknown key '{Scalar(key)}' (TorchServe's keys: dimensions, ts_metrics, model_metrics)");
            }
        }
        var twice = metrics.GroupBy(m => m.Name).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null) throw Error(source, $"metric {twice.Key} is defined more than once");
        return new MetricsConfiguration(metrics, source);
    }

    private static void Section(YamlNode node, bool model, List<MetricSpec> metrics, string source)
    {
        if (node is YamlScalarNode { Value: null or "" or "~" or "null" }) return;
        if (node is not YamlMappingNode types) throw Error(source, $"line {node.Start.Line}: expected counter, gauge and histogram lists");
        foreach (var (key, value) in types.Children)
        {
            var type = Scalar(key) switch
            {
                "counter" => MetricType.Counter,
                "gauge" => MetricType.Gauge,
                "histogram" => MetricType.Histogram,
                var other => throw Error(source, $"line {key.Start.Line}: unknown metric type '{other}' (counter, gauge or histogram)"),
            };
            if (value is YamlScalarNode { Value: null or "" or "~" or "null" }) continue;
            if (value is not YamlSequenceNode list) throw Error(source, $"line {value.Start.Line}: expected a list of metrics under {Scalar(key)}");
            foreach (var item in list) metrics.Add(Metric(item, type, model, source));
        }
    }

    private static MetricSpec Metric(YamlNode node, MetricType type, bool model, string source)
    {
        if (node is not YamlMappingNode fields) throw Error(source, $"line {node.Start.Line}: expected a metric (name, unit, dimensions)");
        string? name = null, unit = null;
        var dimensions = new List<string>();
        foreach (var (key, value) in fields.Children)
        {
            switch (Scalar(key))
            {
                case "name": name = Scalar(value); break;
                case "unit": unit = Scalar(value); break;
                case "dimensions":
                    if (value is YamlSequenceNode names) dimensions.AddRange(names.Select(Scalar).OfType<string>());
                    else if (Scalar(value) is { Length: > 0 }) throw Error(source, $"line {value.Start.Line}: dimensions must be a list");
                    break;
                default: throw Error(source, $"line {key.Start.Line}: unknown metric field '{Scalar(key)}' (name, unit, dimensions)");
            }
        }
        if (string.IsNullOrEmpty(name)) throw Error(source, $"line {node.Start.Line}: a metric without a name");
        if (string.IsNullOrEmpty(unit)) throw Error(source, $"line {node.Start.Line}: metric {name} has no unit");
        // TorchServe adds the Hostname dimension to every model metric.
        if (model) dimensions.Add("Hostname");
        return new MetricSpec(name, unit, type, dimensions, model);
    }

    private static string? Scalar(YamlNode node) => node is YamlScalarNode s ? s.Value : null;

    private static FormatException Error(string source, string message) => new($"metrics_config {source}: {message}");
}
