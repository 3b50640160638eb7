using YamlDotNet.RepresentationModel;

using ServeSharp.Contracts;

namespace ServeSharp.Archive;

/// <summary>Reads <c>model-config.yaml</c> with YamlDotNet's representation model (no reflection-based binding).</summary>
public static class ModelConfigReader
{
    // TorchServe's model-config keys. The ones ServeSharp does not act on are still "known": no warning.
    private static readonly HashSet<string> KnownKeys =
    [
        "minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout", "startupTimeout",
        "deviceType", "deviceIds", "handler", "parallelType", "parallelLevel", "torchrun", "pt2",
        "continuousBatching", "maxRetryTimeoutInSec", "clientTimeoutInMills", "jobQueueSize", "useJobTicket",
        "sequenceMaxIdleMSec", "maxSequenceJobQueueSize", "maxNumSequence", "useVenv", "stateful",
        "sequenceTimeoutMSec", "sequenceBatching", "asyncCommunication",
        "workerIsolation", "maxWorkerMemoryMB", "precision", "sharedSession",
    ];

    // TorchServe keys the server reads or describe shows: a value of the wrong type fails the archive here, as any key's does.
    private static readonly string[] IntKeys =
    [
        "maxRetryTimeoutInSec", "clientTimeoutInMills", "jobQueueSize", "parallelLevel", "sequenceMaxIdleMSec",
        "sequenceTimeoutMSec", "maxNumSequence", "maxSequenceJobQueueSize",
    ];

    private static readonly string[] BoolKeys = ["continuousBatching", "useJobTicket", "useVenv", "sequenceBatching", "asyncCommunication"];

    public static ModelConfig Read(string path)
    {
        var name = Path.GetFileName(path);
        var stream = new YamlStream();
        try
        {
            using var reader = new StreamReader(path);
            stream.Load(reader);
        }
        catch (YamlDotNet.Core.YamlException e)
        {
            throw new ArchiveException($"{name}: invalid YAML at line {e.Start.Line}: {e.Message}", e);
        }

        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is YamlScalarNode { Value: null or "" })
            return ModelConfig.Empty;
        if (stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new ArchiveException($"{name}: the top level must be a mapping of keys to values");

        var all = (IReadOnlyDictionary<string, object?>)Convert(root)!;
        var section = new ConfigSection(all);
        var warnings = new List<string>();
        foreach (var key in all.Keys)
        {
            if (!KnownKeys.Contains(key)) warnings.Add($"{name}: unknown key '{key}' is kept but ignored");
        }

        try
        {
            foreach (var key in IntKeys) section.GetInt(key);
            foreach (var key in BoolKeys) section.GetBool(key);
            return new ModelConfig
            {
                MinWorkers = section.GetInt("minWorkers"),
                MaxWorkers = section.GetInt("maxWorkers"),
                BatchSize = section.GetInt("batchSize"),
                MaxBatchDelay = section.GetInt("maxBatchDelay"),
                ResponseTimeout = section.GetInt("responseTimeout"),
                StartupTimeout = section.GetInt("startupTimeout"),
                DeviceType = ParseDeviceType(section.GetString("deviceType")),
                WorkerIsolation = ParseIsolation(section.GetString("workerIsolation")),
                Precision = ParsePrecision(section.GetString("precision")),
                MaxWorkerMemoryMB = section.GetInt("maxWorkerMemoryMB") is { } mb && mb <= 0
                    ? throw new FormatException($"config key 'maxWorkerMemoryMB': {mb} is not a positive number of megabytes") : section.GetInt("maxWorkerMemoryMB"),
                SharedSession = section.GetBool("sharedSession") ?? false,
                DeviceIds = section.GetDoubleList("deviceIds") is { } ids ? ids.Select(i => (int)i).ToArray() : null,
                Handler = section.GetSection("handler") ?? ConfigSection.Empty,
                All = section,
                Warnings = warnings,
            };
        }
        catch (FormatException e)
        {
            throw new ArchiveException($"{name}: {e.Message}", e);
        }
    }

    private static string? ParseDeviceType(string? value) => value?.ToLowerInvariant() switch
    {
        null => null,
        "cpu" or "gpu" => value.ToLowerInvariant(),
        _ => throw new FormatException($"config key 'deviceType': '{value}' is not cpu or gpu"),
    };

    private static string? ParsePrecision(string? value) => value?.ToLowerInvariant() switch
    {
        null => null,
        QuantizationReport.Fp32Precision or QuantizationReport.Int8Precision or QuantizationReport.Fp16Precision => value.ToLowerInvariant(),
        _ => throw new FormatException($"config key 'precision': '{value}' is not {QuantizationReport.Fp32Precision}, {QuantizationReport.Int8Precision} or {QuantizationReport.Fp16Precision}"),
    };

    /// <summary>"process" or "in-process"; also accepted by config.properties' default_worker_isolation.</summary>
    public static string? ParseIsolation(string? value) => value?.ToLowerInvariant() switch
    {
        null => null,
        "process" or "in-process" => value.ToLowerInvariant(),
        _ => throw new FormatException($"worker isolation '{value}' is not process or in-process"),
    };

    /// <summary>YAML node → plain values: scalar → string (null for ~/null), sequence → list, mapping → dictionary.</summary>
    internal static object? Convert(YamlNode node) => node switch
    {
        YamlScalarNode s => s.Value is "~" or "null" || (s.Value == "" && s.Style == YamlDotNet.Core.ScalarStyle.Plain) ? null : s.Value,
        YamlSequenceNode seq => seq.Children.Select(Convert).ToList(),
        YamlMappingNode map => map.Children.ToDictionary(kv => ((YamlScalarNode)kv.Key).Value ?? "", kv => Convert(kv.Value)),
        _ => null,
    };
}
