namespace ServeSharp.Contracts;

/// <summary>
/// The archive's <c>MAR-INF/MANIFEST.json</c> as a handler sees it (TorchServe's <c>context.manifest</c>): the model's
/// entries, flattened. Absent entries are null.
/// </summary>
public sealed record ModelManifest
{
    /// <summary>The archive's model name.</summary>
    public string? ModelName { get; init; }

    /// <summary>The archive's model version.</summary>
    public string? ModelVersion { get; init; }

    /// <summary>The serialized model file (for ServeSharp, the ONNX file), relative to the model folder.</summary>
    public string? SerializedFile { get; init; }

    /// <summary>The handler entry: a built-in name, or <c>file.cs[:Class]</c> / <c>file.dll[:Class]</c>.</summary>
    public string? Handler { get; init; }

    /// <summary>The model definition file, when the archive has one.</summary>
    public string? ModelFile { get; init; }

    /// <summary>Extra files named by the archive.</summary>
    public string? Extensions { get; init; }

    /// <summary>model-config.yaml's name in the archive, when it has one.</summary>
    public string? ConfigFile { get; init; }

    /// <summary>"python" in archives torch-model-archiver writes.</summary>
    public string? Runtime { get; init; }

    /// <summary>The model's description, when given.</summary>
    public string? Description { get; init; }
}
