using System.Reflection;
using System.Runtime.Loader;

namespace ServeSharp.Loader;

/// <summary>
/// A collectible load context for one model's handler assembly. Assemblies the server already has (the SDK,
/// ONNX Runtime, the framework) resolve to the server's copies so handler types and SDK types are the same
/// types; anything else the handler needs is looked for next to it in the model folder.
/// </summary>
internal sealed class HandlerLoadContext(string name, string modelDirectory) : AssemblyLoadContext(name, isCollectible: true)
{
    private static readonly HashSet<string> ServerAssemblies = ListServerAssemblies();

    protected override Assembly? Load(AssemblyName assemblyName)
    {
        if (assemblyName.Name is null || ServerAssemblies.Contains(assemblyName.Name)) return null;
        var candidate = Path.Combine(modelDirectory, assemblyName.Name + ".dll");
        return File.Exists(candidate) ? LoadBytes(candidate) : null;
    }

    /// <summary>Loads from memory so that the model folder's files are not held open (the folder is deleted on unload).</summary>
    public Assembly LoadBytes(string path)
    {
        using var stream = new MemoryStream(File.ReadAllBytes(path));
        return LoadFromStream(stream);
    }

    private static HashSet<string> ListServerAssemblies()
    {
        var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        if (AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") is string tpa)
        {
            foreach (var path in tpa.Split(Path.PathSeparator)) names.Add(Path.GetFileNameWithoutExtension(path));
        }
        foreach (var assembly in Default.Assemblies)
        {
            if (assembly.GetName().Name is { } n) names.Add(n);
        }
        return names;
    }
}
