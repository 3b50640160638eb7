using ServeSharp.Server.Configuration;

namespace ServeSharp.Tests.Server;

public sealed class ConfigurationTests
{
    [Fact]
    public void Properties_with_continuations_escapes_and_torchserves_models_block_parse()
    {
        var properties = PropertiesFile.Parse("""
            # comment
            ! another comment
            inference_address=http://0.0.0.0:9080
            management_address : http://127.0.0.1:9081
            allowed_urls=https://models\\.example\\.com/.*,file://.*
            job_queue_size=7
            models={\
              "deeplab": {\
                "1.0": {"defaultVersion": true, "marName": "deeplab.mar", "minWorkers": 2, "maxWorkers": 3, "batchSize": 4, "maxBatchDelay": 50, "responseTimeout": 30}\
              }\
            }
            some_future_key=1
            number_of_netty_threads=32
            """);
        var config = ServerConfig.From(properties);

        Assert.Equal(new Uri("http://0.0.0.0:9080"), config.InferenceAddress);
        Assert.Equal(new Uri("http://127.0.0.1:9081"), config.ManagementAddress);
        Assert.Equal(["https://models\\.example\\.com/.*", "file://.*"], config.AllowedUrls);
        Assert.Equal(7, config.JobQueueSize);
        var deeplab = config.Models["deeplab"]["1.0"];
        Assert.Equal((true, "deeplab.mar", 2, 3, 4, 50, 30), (deeplab.DefaultVersion, deeplab.MarName, deeplab.MinWorkers, deeplab.MaxWorkers, deeplab.BatchSize, deeplab.MaxBatchDelay, deeplab.ResponseTimeout));
        // Unknown keys warn, and so do TorchServe keys that ServeSharp has no use for: nothing is dropped silently.
        Assert.Equal(["config.properties: 'number_of_netty_threads' is a TorchServe setting ServeSharp does not use; ignored",
            "config.properties: unknown key 'some_future_key' is ignored"], config.Warnings);
    }

    [Fact]
    public void Ts_environment_variables_override_only_when_enabled()
    {
        var env = new Dictionary<string, string> { ["TS_JOB_QUEUE_SIZE"] = "42", ["TS_ENABLE_MODEL_API"] = "true" };
        Assert.Equal(100, ServerConfig.From(new Dictionary<string, string>(), env).JobQueueSize);
        var enabled = ServerConfig.From(new Dictionary<string, string> { ["enable_envvars_config"] = "true" }, env);
        Assert.Equal(42, enabled.JobQueueSize);
        Assert.True(enabled.EnableModelApi);
    }

    [Fact]
    public void The_command_line_wins_over_the_file_and_ts_environment_variables_over_both_as_in_torchserve()
    {
        var file = new Dictionary<string, string> { ["model_store"] = "from-file", ["enable_envvars_config"] = "true" };
        var cli = new CommandLineSettings { ModelStore = "from-cli", DisableTokenAuthorization = true };
        Assert.Equal("from-cli", ServerConfig.From(file, new Dictionary<string, string>(), cli).ModelStore);
        Assert.True(ServerConfig.From(file, new Dictionary<string, string>(), cli).DisableTokenAuthorization);
        var env = new Dictionary<string, string> { ["TS_MODEL_STORE"] = "from-env", ["TS_CONFIG_FILE"] = "other.properties" };
        var config = ServerConfig.From(file, env, cli);
        Assert.Equal("from-env", config.ModelStore);
        Assert.Empty(config.Warnings); // TS_CONFIG_FILE names the file; it is not a key
    }

    [Theory]
    [InlineData("token_expiration_min", "soon", "token_expiration_min 'soon' is not a number")]
    [InlineData("token_expiration_min", "0", "token_expiration_min must be a positive number of minutes")]
    [InlineData("keystore_type", "JKS", "keystore_type 'JKS' is not supported")]
    [InlineData("job_queue_size", "lots", "job_queue_size 'lots' is not an integer")]
    [InlineData("enable_model_api", "maybe", "enable_model_api 'maybe' is not true or false")]
    [InlineData("inference_address", "8080", "inference_address '8080' is not an http(s)://host:port address")]
    [InlineData("models", "{not json", "models is not TorchServe's JSON block")]
    public void Bad_values_name_the_key(string key, string value, string expected)
    {
        var error = Assert.Throws<FormatException>(() => ServerConfig.From(new Dictionary<string, string> { [key] = value }));
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void The_repositorys_config_properties_parses_without_warnings_and_documents_every_key()
    {
        var path = Path.Combine(Support.Repo.Root, "config.properties");
        var text = File.ReadAllText(path);
        var config = ServerConfig.From(PropertiesFile.Parse(text));
        Assert.Empty(config.Warnings);
        foreach (var key in new[] { "inference_address", "management_address", "metrics_address", "model_store", "load_models", "default_workers_per_model",
                     "job_queue_size", "default_response_timeout", "default_startup_timeout", "max_request_size", "max_response_size", "number_of_gpu",
                     "allowed_urls", "disable_token_authorization", "enable_model_api", "models", "enable_envvars_config", "default_worker_isolation", "worker_user",
                     "grpc_inference_address", "grpc_inference_port", "grpc_management_address", "grpc_management_port", "enable_grpc_ssl",
                     "certificate_file", "private_key_file", "keystore", "keystore_pass", "keystore_type", "cors_allowed_origin",
                     "cors_allowed_methods", "cors_allowed_headers", "token_expiration_min", "enable_playground", "shutdown_grace_period", "service_envelope", "kserve_address" })
            Assert.Contains(key, text);
    }
}
