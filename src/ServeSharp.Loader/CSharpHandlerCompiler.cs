using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace ServeSharp.Loader;

/// <summary>
/// Compiles a handler's <c>.cs</c> file at load time against the server's own assemblies (so the SDK it
/// sees is the SDK that runs it). Errors come back as "file(line,col): error CSxxxx: message" lines.
/// </summary>
internal static class CSharpHandlerCompiler
{
    private static readonly Lazy<MetadataReference[]> References = new(LoadReferences);

    /// <summary>The SDK's implicit usings, so a handler file reads like one in a normal .NET project.</summary>
    public const string GlobalUsings = """
        global using System;
        global using System.Collections.Generic;
        global using System.IO;
        global using System.Linq;
        global using System.Threading;
        global using System.Threading.Tasks;
        """;

    private static readonly SyntaxTree GlobalUsingsTree = CSharpSyntaxTree.ParseText(GlobalUsings, new CSharpParseOptions(LanguageVersion.Latest), path: "GlobalUsings.g.cs");

    /// <summary>
    /// Compiles <paramref name="sourcePath"/>, or loads the image an earlier compile of the same source left in
    /// <paramref name="cacheDirectory"/>: a worker process then loads in a fraction of the time and without Roslyn.
    /// </summary>
    public static Assembly Compile(string sourcePath, HandlerLoadContext loadContext, string? cacheDirectory = null)
    {
        var fileName = Path.GetFileName(sourcePath);
        var source = File.ReadAllText(sourcePath);
        var cached = cacheDirectory is null ? null : CachePath(cacheDirectory, fileName, source);
        if (cached is not null && File.Exists(cached)) return loadContext.LoadBytes(cached);

        var tree = CSharpSyntaxTree.ParseText(source, new CSharpParseOptions(LanguageVersion.Latest), path: fileName, encoding: Encoding.UTF8);
        var compilation = CSharpCompilation.Create(
            $"handler_{Path.GetFileNameWithoutExtension(fileName)}_{Guid.NewGuid():N}",
            [tree, GlobalUsingsTree],
            References.Value,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, optimizationLevel: OptimizationLevel.Release, nullableContextOptions: NullableContextOptions.Enable, allowUnsafe: true));

        using var image = new MemoryStream();
        var result = compilation.Emit(image);
        if (!result.Success)
        {
            var errors = new StringBuilder($"handler {fileName} does not compile:");
            foreach (var d in result.Diagnostics)
            {
                if (d.Severity != DiagnosticSeverity.Error) continue;
                var span = d.Location.GetLineSpan();
                errors.Append($"\n{fileName}({span.StartLinePosition.Line + 1},{span.StartLinePosition.Character + 1}): error {d.Id}: {d.GetMessage()}");
            }
            throw new Sdk.HandlerLoadException(errors.ToString());
        }

        if (cached is not null) TryCache(cached, image);
        image.Position = 0;
        return loadContext.LoadFromStream(image);
    }

    // The image depends on the source and on the SDK it was compiled against (a new server build compiles afresh).
    private static string CachePath(string directory, string fileName, string source)
    {
        var sdk = typeof(Sdk.IModelHandler).Assembly.ManifestModule.ModuleVersionId.ToString("N");
        var key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(sdk + "\n" + source)))[..32];
        return Path.Combine(directory, $"{Path.GetFileNameWithoutExtension(fileName)}-{key}.dll");
    }

    // A cache that cannot be written (read-only folder, full disk) only costs the next load a compile.
    private static void TryCache(string path, MemoryStream image)
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var partial = $"{path}.{Guid.NewGuid():N}.partial";
            File.WriteAllBytes(partial, image.ToArray());
            File.Move(partial, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    // The framework and every assembly the server ships: a handler may use ONNX Runtime, SkiaSharp, logging...
    private static MetadataReference[] LoadReferences()
    {
        var paths = new HashSet<string>(StringComparer.Ordinal);
        if (AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") is string tpa)
        {
            foreach (var path in tpa.Split(Path.PathSeparator)) paths.Add(path);
        }
        paths.Add(typeof(Sdk.IModelHandler).Assembly.Location);
        paths.Add(typeof(Contracts.ConfigSection).Assembly.Location);
        var references = new List<MetadataReference>(paths.Count);
        foreach (var path in paths)
        {
            if (path.Length > 0 && File.Exists(path)) references.Add(MetadataReference.CreateFromFile(path));
        }
        return [.. references];
    }
}
