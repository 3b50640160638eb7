using Microsoft.Extensions.Logging;
using ServeSharp.Archive;
using ServeSharp.Contracts;
using ServeSharp.Sdk;

namespace ServeSharp.Loader;

/// <summary>Builds handler contexts from an opened archive: the one place archive types become the SDK's.</summary>
internal static class HandlerContexts
{
    /// <summary>The context for one worker of the model in <paramref name="archive"/>.</summary>
    public static HandlerContext For(ModelArchive archive, SystemProperties properties, ILogger logger, string? modelName = null, string? modelVersion = null,
        SharedSession? sharedSession = null) => new()
    {
        ModelName = modelName ?? archive.ModelName,
        ModelVersion = modelVersion ?? archive.ModelVersion,
        ModelDirectory = archive.ModelDirectory,
        Manifest = ManifestOf(archive.Manifest) with { SerializedFile = archive.ServedModelFile },
        HandlerConfig = archive.Config.Handler,
        SystemProperties = properties,
        Logger = logger,
        SharedSession = sharedSession,
    };

    private static ModelManifest ManifestOf(Manifest manifest) => new()
    {
        ModelName = manifest.Model?.ModelName,
        ModelVersion = manifest.Model?.ModelVersion,
        SerializedFile = manifest.Model?.SerializedFile,
        Handler = manifest.Model?.Handler,
        ModelFile = manifest.Model?.ModelFile,
        Extensions = manifest.Model?.Extensions,
        ConfigFile = manifest.Model?.ConfigFile,
        Runtime = manifest.Runtime,
        Description = manifest.Model?.Description ?? manifest.Description,
    };
}
