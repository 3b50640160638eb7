using ServeSharp.Archive;

namespace ServeSharp.Tests.Support;

/// <summary>Writes a .mar into a model store the way torch-model-archiver would, with a model-config.yaml.</summary>
internal static class TestArchives
{
    public static void Write(TempDir scratch, string store, string name, string handler, string config, string? serializedFile = null, string version = "1.0", string? fileName = null, string[]? extraFiles = null)
    {
        var staging = scratch.Sub($"cfg-{fileName ?? name}");
        var configPath = Path.Combine(staging, "model-config.yaml");
        File.WriteAllText(configPath, config);
        var written = ArchiveWriter.Write(new ArchiveSpec
        {
            ModelName = name, Version = version, Handler = handler, ConfigFile = configPath, SerializedFile = serializedFile, ExtraFiles = extraFiles ?? [], ExportPath = staging,
        });
        File.Move(written, Path.Combine(store, (fileName ?? name) + ".mar"));
    }
}
