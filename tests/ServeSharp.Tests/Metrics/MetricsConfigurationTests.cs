using ServeSharp.Server.Metrics;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Metrics;

/// <summary>metrics.yaml in TorchServe's format, the refusals of a file TorchServe would refuse, and Java's number format.</summary>
public sealed class MetricsConfigurationTests
{
    [Fact]
    public void The_default_is_TorchServes_default_metrics_yaml_with_ServeSharps_additions()
    {
        var config = MetricsConfiguration.Load(null);
        MetricSpec Spec(string name) => config.Metrics.Single(m => m.Name == name);
        Assert.Equal(("Count", MetricType.Counter, false), (Spec("Requests2XX").Unit, Spec("Requests2XX").Type, Spec("Requests2XX").Model));
        Assert.Equal(["Level", "Hostname"], Spec("Requests2XX").Dimensions);
        Assert.Equal(["Level", "Hostname"], Spec("CPUUtilization").Dimensions);
        Assert.Equal(("Percent", MetricType.Gauge), (Spec("CPUUtilization").Unit, Spec("CPUUtilization").Type));
        Assert.Equal(("Megabytes", "Gigabytes"), (Spec("MemoryUsed").Unit, Spec("DiskUsage").Unit));
        Assert.Equal(["WorkerName", "Level", "Hostname"], Spec("WorkerLoadTime").Dimensions);
        Assert.Equal(["Level", "DeviceId", "Hostname"], Spec("GPUUtilization").Dimensions);
        Assert.Equal(["model_name", "model_version", "hostname", "protocol"], Spec("ts_inference_requests_total").Dimensions);
        // Model metrics get Hostname added, as TorchServe's MetricConfiguration adds it.
        Assert.Equal(["ModelName", "Level", "Hostname"], Spec("HandlerTime").Dimensions);
        Assert.True(Spec("HandlerTime").Model);
        Assert.Empty(ServerMetrics.Check(config));
    }

    [Fact]
    public void Aliases_resolve_and_empty_sections_are_allowed()
    {
        var config = MetricsConfiguration.Parse("""
            dimensions:
              - &level "Level"
              - &hostname "Hostname"
            ts_metrics:
              counter:
                - name: Requests2XX
                  unit: Count
                  dimensions: [*level, *hostname]
              gauge:
            model_metrics:
            """, "test.yaml");
        var spec = Assert.Single(config.Metrics);
        Assert.Equal(["Level", "Hostname"], spec.Dimensions);
    }

    public static TheoryData<string, string> Malformed => new()
    {
        { "ts_metrics:\n  counter:\n    - name: [unclosed\n", "invalid YAML at line" },
        { "- just\n- a list\n", "expected a mapping" },
        { "ts_metric:\n  counter: []\n", "unknown key 'ts_metric'" },
        { "ts_metrics:\n  summary:\n    - name: X\n      unit: ms\n", "unknown metric type 'summary'" },
        { "ts_metrics:\n  gauge:\n    - name: QueueTime\n      dimensions: [Level]\n", "metric QueueTime has no unit" },
        { "ts_metrics:\n  gauge:\n    - unit: ms\n", "a metric without a name" },
        { "ts_metrics:\n  gauge:\n    - name: QueueTime\n      unit: ms\n      labels: [Level]\n", "unknown metric field 'labels'" },
        { "ts_metrics:\n  gauge:\n    - name: QueueTime\n      unit: ms\n  counter:\n    - name: QueueTime\n      unit: ms\n", "QueueTime is defined more than once" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void A_file_TorchServe_would_refuse_is_refused_naming_the_file(string yaml, string reason)
    {
        var error = Assert.Throws<FormatException>(() => MetricsConfiguration.Parse(yaml, "/etc/ts/metrics.yaml"));
        Assert.StartsWith("metrics_config /etc/ts/metrics.yaml: ", error.Message);
        Assert.Contains(reason, error.Message);
    }

    [Fact]
    public void A_dimension_ServeSharp_cannot_fill_is_refused_and_a_metric_it_does_not_measure_is_a_warning()
    {
        var unfillable = MetricsConfiguration.Parse("ts_metrics:\n  counter:\n    - name: Requests2XX\n      unit: Count\n      dimensions: [ModelName, Hostname]\n", "m.yaml");
        var error = Assert.Throws<FormatException>(() => ServerMetrics.Check(unfillable));
        Assert.Contains("metrics_config m.yaml: Requests2XX has dimension 'ModelName'", error.Message);

        var custom = MetricsConfiguration.Parse("model_metrics:\n  counter:\n    - name: InferenceTimeInMS\n      unit: ms\n      dimensions: [ModelName, Level]\n", "m.yaml");
        Assert.Contains("InferenceTimeInMS", Assert.Single(ServerMetrics.Check(custom)));
    }

    [Fact]
    public void A_missing_file_is_named()
    {
        using var dir = new TempDir();
        var error = Assert.Throws<FormatException>(() => MetricsConfiguration.Load(dir.File("nothere.yaml")));
        Assert.Contains(dir.File("nothere.yaml"), error.Message);
    }

    [Theory]
    [InlineData(1.0, "1.0")]
    [InlineData(83.13, "83.13")]
    [InlineData(290371.129, "290371.129")]
    [InlineData(0.0, "0.0")]
    [InlineData(0.001, "0.001")]
    [InlineData(0.00025, "2.5E-4")]
    [InlineData(1e7, "1.0E7")]
    [InlineData(12345678.9, "1.23456789E7")]
    [InlineData(-4.5, "-4.5")]
    [InlineData(1.5e-5, "1.5E-5")]
    [InlineData(3e20, "3.0E20")]
    public void Values_print_as_Javas_Double_toString_prints_them(double value, string expected) =>
        Assert.Equal(expected, JavaDouble.Format(value));
}
