using ServeSharp.Archive;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Archive;

public sealed class ModelConfigTests
{
    [Fact]
    public void Reads_torchserve_keys_handler_section_and_keeps_unknown_keys_with_a_warning()
    {
        using var tmp = new TempDir();
        var path = tmp.File("model-config.yaml");
        File.WriteAllText(path, """
            minWorkers: 1
            maxWorkers: 3
            batchSize: 8
            maxBatchDelay: 25
            responseTimeout: 90
            startupTimeout: 30
            deviceType: GPU
            deviceIds: [0, 2]
            parallelType: pp
            sharedSession: true
            myCustomKey: hello
            handler:
              mode: fixed
              size: [640, 480]
              flip: true
              nested:
                alpha: 0.4
            """);

        var config = ModelConfigReader.Read(path);
        Assert.Equal((1, 3, 8, 25, 90, 30), (config.MinWorkers, config.MaxWorkers, config.BatchSize, config.MaxBatchDelay, config.ResponseTimeout, config.StartupTimeout));
        Assert.Equal("gpu", config.DeviceType);
        Assert.True(config.SharedSession);
        Assert.Equal([0, 2], config.DeviceIds);
        Assert.Equal("fixed", config.Handler.GetString("mode"));
        Assert.Equal([640.0, 480.0], config.Handler.GetDoubleList("size"));
        Assert.True(config.Handler.GetBool("flip"));
        Assert.Equal(0.4, config.Handler.GetSection("nested")!.GetDouble("alpha"));
        Assert.Equal("hello", config.All.GetString("myCustomKey"));
        Assert.Equal(["model-config.yaml: unknown key 'myCustomKey' is kept but ignored"], config.Warnings);
    }

    [Theory]
    [InlineData("deviceType: tpu", "'deviceType': 'tpu' is not cpu or gpu")]
    [InlineData("maxBatchDelay: 1.5", "'maxBatchDelay': '1.5' is not an integer")]
    [InlineData("- just\n- a list", "the top level must be a mapping")]
    [InlineData("precision: bf16", "config key 'precision': 'bf16' is not fp32, int8 or fp16")]
    [InlineData("sharedSession: sometimes", "'sharedSession'")]
    public void Bad_values_name_the_key(string yaml, string expected)
    {
        using var tmp = new TempDir();
        var path = tmp.File("bad.yaml");
        File.WriteAllText(path, yaml);
        var error = Assert.Throws<ArchiveException>(() => ModelConfigReader.Read(path));
        Assert.Contains("bad.yaml", error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Theory]
    [InlineData("precision: int8", "int8")]
    [InlineData("precision: INT8", "int8")]
    [InlineData("precision: fp32", "fp32")]
    [InlineData("precision: FP16", "fp16")]
    [InlineData("minWorkers: 1", null)]
    public void Precision_is_fp32_int8_or_fp16_and_known(string yaml, string? expected)
    {
        using var tmp = new TempDir();
        var path = tmp.File("model-config.yaml");
        File.WriteAllText(path, yaml);
        var config = ModelConfigReader.Read(path);
        Assert.Equal(expected, config.Precision);
        Assert.Empty(config.Warnings);
    }

    [Fact]
    public void An_empty_file_is_an_empty_config()
    {
        using var tmp = new TempDir();
        var path = tmp.File("empty.yaml");
        File.WriteAllText(path, "");
        Assert.Null(ModelConfigReader.Read(path).BatchSize);
        Assert.False(ModelConfigReader.Read(path).SharedSession);
    }
}
