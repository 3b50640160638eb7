using ServeSharp.Server.Cli;
using ServeSharp.Server.Configuration;

namespace ServeSharp.Tests.Deploy;

/// <summary>
/// How KServe's TorchServe runtime starts a container, taken apart: its exact argument line, TS_SERVICE_ENVELOPE, and
/// the config.properties its users have (pytorch/serve's kubernetes/kserve sample).
/// </summary>
public sealed class KServeEntryTests
{
    private static readonly Dictionary<string, string> NoEnvironment = [];

    [Fact]
    public void Kserves_argument_line_parses_with_its_flag_equals_value_form()
    {
        var cli = CommandLine.Parse(["--start", "--model-store=/mnt/models/model-store", "--ts-config=/mnt/models/config/config.properties"]);
        Assert.True(cli.Start);
        Assert.Equal("/mnt/models/model-store", cli.ModelStore);
        Assert.Equal("/mnt/models/config/config.properties", cli.ConfigFile);
        var models = CommandLine.Parse(["--start", "--models=deeplab=deeplab.mar", "--ncs"]);
        Assert.Equal(["deeplab=deeplab.mar"], models.Models);
    }

    [Theory]
    [InlineData("kserve")]
    [InlineData("kservev2")]
    [InlineData("KServeV2")]
    public void The_service_envelope_opens_the_kserve_listener_on_8080_and_turns_tokens_off(string envelope)
    {
        // Without enable_envvars_config: KServe sets the variable whatever the user's file says.
        var config = ServerConfig.From(new Dictionary<string, string>(), new Dictionary<string, string> { ["TS_SERVICE_ENVELOPE"] = envelope });
        Assert.Equal(envelope.ToLowerInvariant(), config.ServiceEnvelope);
        Assert.Equal(new Uri("http://0.0.0.0:8080"), config.KServeAddress);
        Assert.True(config.DisableTokenAuthorization);
        Assert.Contains(config.Warnings, w => w.Contains("token authorization is off", StringComparison.Ordinal));
    }

    [Fact]
    public void Without_an_envelope_there_is_no_kserve_listener_and_tokens_stay_on()
    {
        var config = ServerConfig.From(new Dictionary<string, string>(), NoEnvironment);
        Assert.Null(config.ServiceEnvelope);
        Assert.Null(config.KServeAddress);
        Assert.False(config.DisableTokenAuthorization);
        // An empty variable (a label KServe did not set) is no envelope.
        Assert.Null(ServerConfig.From(new Dictionary<string, string>(), new Dictionary<string, string> { ["TS_SERVICE_ENVELOPE"] = "" }).KServeAddress);
    }

    [Fact]
    public void Tokens_stay_on_under_kserve_when_the_configuration_says_so_and_kserve_address_moves_the_listener()
    {
        var file = new Dictionary<string, string>
        {
            ["service_envelope"] = "kservev2", ["disable_token_authorization"] = "false", ["kserve_address"] = "http://127.0.0.1:9090",
        };
        var config = ServerConfig.From(file, NoEnvironment);
        Assert.False(config.DisableTokenAuthorization);
        Assert.Equal(new Uri("http://127.0.0.1:9090"), config.KServeAddress);
        Assert.Empty(config.Warnings);
        // kserve_address alone opens the listener too, without KServe's token default.
        var alone = ServerConfig.From(new Dictionary<string, string> { ["kserve_address"] = "http://127.0.0.1:9090" }, NoEnvironment);
        Assert.Equal(new Uri("http://127.0.0.1:9090"), alone.KServeAddress);
        Assert.False(alone.DisableTokenAuthorization);
    }

    [Fact]
    public void Kserves_sample_config_properties_is_read_with_torchserves_meanings()
    {
        // pytorch/serve kubernetes/kserve/config.properties, as KServe users mount it at /mnt/models/config.
        var properties = PropertiesFile.Parse("""
            inference_address=http://0.0.0.0:8085
            management_address=http://0.0.0.0:8085
            metrics_address=http://0.0.0.0:8082
            grpc_inference_port=7070
            grpc_management_port=7071
            enable_envvars_config=true
            install_py_dep_per_model=true
            enable_metrics_api=true
            metrics_mode=prometheus
            NUM_WORKERS=1
            number_of_netty_threads=4
            job_queue_size=10
            load_models=all
            model_store=/home/model-server/shared/model-store
            """);
        var environment = new Dictionary<string, string> { ["TS_SERVICE_ENVELOPE"] = "kservev2" };
        var cli = new CommandLineSettings { ModelStore = "/mnt/models/model-store" };
        var config = ServerConfig.From(properties, environment, cli);
        Assert.Equal(new Uri("http://0.0.0.0:8085"), config.InferenceAddress);
        Assert.Equal(config.InferenceAddress, config.ManagementAddress);
        Assert.Equal(new Uri("http://0.0.0.0:8080"), config.KServeAddress);
        Assert.Equal("/mnt/models/model-store", config.ModelStore);
        Assert.Equal(["all"], config.LoadModels);
        Assert.Equal(10, config.JobQueueSize);
        Assert.True(config.DisableTokenAuthorization);
    }

    [Theory]
    [InlineData("json", "service_envelope 'json' is not supported")]
    [InlineData("body", "service_envelope 'body' is not supported")]
    public void Torchserves_other_envelopes_are_refused_with_the_reason(string envelope, string expected)
    {
        var e = Assert.Throws<FormatException>(() => ServerConfig.From(new Dictionary<string, string>(), new Dictionary<string, string> { ["TS_SERVICE_ENVELOPE"] = envelope }));
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData(null, 20)]
    [InlineData("5", 5)]
    [InlineData("0", 0)]
    public void Shutdown_grace_period_defaults_under_kubernetes_thirty_seconds(string? value, int expected)
    {
        var file = value is null ? new Dictionary<string, string>() : new Dictionary<string, string> { ["shutdown_grace_period"] = value };
        Assert.Equal(expected, ServerConfig.From(file, NoEnvironment).ShutdownGracePeriod);
    }

    [Theory]
    [InlineData("-1", "shutdown_grace_period must be 0 or more")]
    [InlineData("soon", "shutdown_grace_period 'soon' is not an integer")]
    [InlineData("ftp://0.0.0.0:8080", "kserve_address 'ftp://0.0.0.0:8080'")]
    public void Bad_values_stop_the_start_naming_the_key(string value, string expected)
    {
        var key = value.StartsWith("ftp", StringComparison.Ordinal) ? "kserve_address" : "shutdown_grace_period";
        var e = Assert.Throws<FormatException>(() => ServerConfig.From(new Dictionary<string, string> { [key] = value }, NoEnvironment));
        Assert.Contains(expected, e.Message);
    }
}
