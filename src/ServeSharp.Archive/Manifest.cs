using System.Text.Json.Serialization;

namespace ServeSharp.Archive;

/// <summary>
/// <c>MAR-INF/MANIFEST.json</c> with torch-model-archiver's key names, so archives move both ways
/// between TorchServe and ServeSharp unchanged.
/// </summary>
public sealed record Manifest
{
    /// <summary>The archiver writes this as <c>dd/MM/yyyy HH:mm:ss</c>.</summary>
    [JsonPropertyName("createdOn")] public string? CreatedOn { get; init; }

    /// <summary>"python" in every archive torch-model-archiver writes; ServeSharp writes the same so TorchServe accepts ours.</summary>
    [JsonPropertyName("runtime")] public string? Runtime { get; init; }

    [JsonPropertyName("model")] public ManifestModel? Model { get; init; }

    [JsonPropertyName("archiverVersion")] public string? ArchiverVersion { get; init; }

    [JsonPropertyName("description")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Description { get; init; }

    public const string DateFormat = "dd/MM/yyyy HH:mm:ss";
    public const string RelativePath = "MAR-INF/MANIFEST.json";
}

/// <summary>The <c>model</c> object of the manifest. Optional keys are omitted when absent, as the archiver does.</summary>
public sealed record ManifestModel
{
    [JsonPropertyName("modelName")] public string? ModelName { get; init; }

    [JsonPropertyName("description")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Description { get; init; }

    [JsonPropertyName("serializedFile")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? SerializedFile { get; init; }

    [JsonPropertyName("handler")] public string? Handler { get; init; }

    [JsonPropertyName("modelFile")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ModelFile { get; init; }

    [JsonPropertyName("modelVersion")] public string? ModelVersion { get; init; }

    [JsonPropertyName("extensions")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Extensions { get; init; }

    [JsonPropertyName("requirementsFile")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? RequirementsFile { get; init; }

    [JsonPropertyName("configFile")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ConfigFile { get; init; }
}

[JsonSourceGenerationOptions(WriteIndented = true, ReadCommentHandling = System.Text.Json.JsonCommentHandling.Skip, AllowTrailingCommas = true)]
[JsonSerializable(typeof(Manifest))]
internal sealed partial class ManifestJsonContext : JsonSerializerContext;
