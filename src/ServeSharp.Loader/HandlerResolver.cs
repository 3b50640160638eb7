using System.Reflection;
using ServeSharp.Archive;
using ServeSharp.Sdk;

namespace ServeSharp.Loader;

/// <summary>
/// Resolves a manifest's <c>handler</c> as TorchServe does, for C#:
/// a built-in name; <c>file.cs[:Namespace.Class]</c> compiled with Roslyn; <c>file.dll[:Namespace.Class]</c>
/// in its own collectible load context. Python handlers are refused with the alternative named.
/// </summary>
/// <param name="builtIns">The built-in handlers by name.</param>
/// <param name="compiledCache">Where compiled <c>.cs</c> handlers are kept for the next load of the same source (worker processes).</param>
internal sealed class HandlerResolver(IReadOnlyDictionary<string, Func<IModelHandler>> builtIns, string? compiledCache = null)
{
    public string? CompiledCache => compiledCache;

    /// <summary>Resolves the archive's handler, or <paramref name="handlerOverride"/> (the management API's <c>handler</c> parameter).</summary>
    public HandlerFactory Resolve(ModelArchive archive, string? handlerOverride = null)
    {
        var handler = handlerOverride ?? archive.Model.Handler!;
        var (file, entry) = ArchiveWriter.SplitHandler(handler);

        // torch-model-archiver -r: Python packages for TorchServe to pip-install. Nothing here would install or use them,
        // and loading anyway would hide that the archive expects them.
        if (archive.Model.RequirementsFile is { } requirements && !file.EndsWith(".py", StringComparison.OrdinalIgnoreCase))
            throw new HandlerLoadException(
                $"the archive carries a requirements file ('{requirements}', torch-model-archiver -r/--requirements-file): Python packages, " +
                $"which ServeSharp does not install — its handlers run on .NET. Archive it again without -r (handler '{handler}' needs no Python " +
                "packages; a .dll handler's own .NET dependencies go in --extra-files).");

        if (builtIns.TryGetValue(handler, out var builtIn))
            return new HandlerFactory($"built-in {handler}", builtIn, loadContext: null);

        if (file.EndsWith(".py", StringComparison.OrdinalIgnoreCase))
            throw new HandlerLoadException(
                $"handler '{handler}' is a Python handler, which ServeSharp cannot run. Use a built-in ({BuiltInList()}) " +
                "or port it to C#: a .cs file in the archive with a class deriving from ServeSharp.Sdk.BaseHandler " +
                "(Initialize / Preprocess / Inference / Postprocess), named as --handler file.cs[:Namespace.Class].");

        var isCs = file.EndsWith(".cs", StringComparison.OrdinalIgnoreCase);
        var isDll = file.EndsWith(".dll", StringComparison.OrdinalIgnoreCase);
        if (!isCs && !isDll)
            throw new HandlerLoadException($"handler '{handler}' is neither a built-in ({BuiltInList()}) nor a .cs or .dll file in the archive");

        var path = Path.Combine(archive.ModelDirectory, file);
        if (!File.Exists(path))
            throw new HandlerLoadException($"handler file '{file}' is not in the archive {Path.GetFileName(archive.SourcePath)}");

        var context = new HandlerLoadContext($"handler:{archive.ModelName}", archive.ModelDirectory);
        try
        {
            var assembly = isCs ? CSharpHandlerCompiler.Compile(path, context, compiledCache) : LoadDll(context, path, file);
            var type = FindHandlerType(assembly, file, entry);
            return new HandlerFactory(handler, () => (IModelHandler)Activator.CreateInstance(type)!, context);
        }
        catch
        {
            context.Unload();
            throw;
        }
    }

    private static Assembly LoadDll(HandlerLoadContext context, string path, string file)
    {
        try
        {
            return context.LoadBytes(path);
        }
        catch (BadImageFormatException e)
        {
            throw new HandlerLoadException($"handler {file} is not a .NET assembly: {e.Message}", e);
        }
    }

    private static Type FindHandlerType(Assembly assembly, string file, string? entry)
    {
        Type[] types;
        try
        {
            types = assembly.GetExportedTypes();
        }
        catch (Exception e) when (e is ReflectionTypeLoadException or FileNotFoundException or TypeLoadException)
        {
            throw new HandlerLoadException($"handler {file}: its types cannot be loaded ({e.Message})", e);
        }

        if (entry is not null)
        {
            var named = Array.Find(types, t => t.FullName == entry || t.Name == entry)
                ?? throw new HandlerLoadException($"handler {file} has no public class '{entry}'");
            return IsHandler(named) ? named
                : throw new HandlerLoadException($"handler {file}: class '{entry}' is not a concrete IModelHandler with a public parameterless constructor");
        }

        var candidates = Array.FindAll(types, IsHandler);
        return candidates.Length switch
        {
            1 => candidates[0],
            0 => throw new HandlerLoadException($"handler {file} has no public class implementing ServeSharp.Sdk.IModelHandler (derive from BaseHandler)"),
            _ => throw new HandlerLoadException($"handler {file} has several handler classes ({string.Join(", ", candidates.Select(t => t.FullName))}); name one as {file}:Namespace.Class"),
        };
    }

    private static bool IsHandler(Type t) =>
        t is { IsClass: true, IsAbstract: false } && typeof(IModelHandler).IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null;

    private string BuiltInList() => builtIns.Count == 0 ? "none registered" : string.Join(", ", builtIns.Keys.Order());
}
