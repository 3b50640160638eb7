using ServeSharp.Server.Configuration;
using ServeSharp.Server.Metrics;

namespace ServeSharp.Tests.Metrics;

/// <summary>The metrics keys of config.properties: TorchServe's names, defaults and spellings, and clear refusals.</summary>
public sealed class MetricsSettingsTests
{
    [Fact]
    public void Defaults_are_TorchServes_log_mode_the_default_metrics_yaml_and_a_60_second_interval()
    {
        var config = ServerConfig.From(new Dictionary<string, string>());
        Assert.Equal((MetricsMode.Log, null, 60, false), (config.MetricsMode, config.MetricsConfig, config.MetricTimeInterval, config.DisableSystemMetrics));
    }

    [Theory]
    [InlineData("log", "Log")]
    [InlineData("prometheus", "Prometheus")]
    [InlineData(" Prometheus ", "Prometheus")]
    [InlineData("LEGACY", "Log")]
    public void Metrics_mode_is_read_as_TorchServe_reads_it(string value, string mode)
    {
        var expected = Enum.Parse<MetricsMode>(mode);
        var config = ServerConfig.From(new Dictionary<string, string> { ["metrics_mode"] = value, ["metrics_config"] = "m.yaml", ["metric_time_interval"] = "5", ["disable_system_metrics"] = "true" });
        Assert.Equal((expected, "m.yaml", 5, true), (config.MetricsMode, config.MetricsConfig, config.MetricTimeInterval, config.DisableSystemMetrics));
        Assert.Empty(config.Warnings);
    }

    [Theory]
    [InlineData("metrics_mode", "statsd", "metrics_mode 'statsd' is not log or prometheus")]
    [InlineData("metric_time_interval", "0", "metric_time_interval must be at least 1 second")]
    [InlineData("metric_time_interval", "soon", "metric_time_interval 'soon' is not an integer")]
    public void Bad_values_stop_the_start_naming_the_key(string key, string value, string expected)
    {
        var error = Assert.Throws<FormatException>(() => ServerConfig.From(new Dictionary<string, string> { [key] = value }));
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void TorchServe_metrics_keys_ServeSharp_does_not_act_on_are_named_as_ignored()
    {
        var config = ServerConfig.From(new Dictionary<string, string> { ["model_metrics_auto_detect"] = "true", ["enable_metrics_api"] = "false" });
        Assert.All(config.Warnings, w => Assert.Contains("is a TorchServe setting ServeSharp does not use", w));
        Assert.Equal(2, config.Warnings.Count);
    }

    [Fact]
    public void The_repositorys_config_properties_documents_the_metrics_keys()
    {
        var text = File.ReadAllText(Path.Combine(Support.Repo.Root, "config.properties"));
        foreach (var key in (string[])["metrics_mode", "metrics_config", "metric_time_interval", "disable_system_metrics", "LOG_LOCATION", "METRICS_LOCATION"])
            Assert.Contains(key, text);
    }
}
