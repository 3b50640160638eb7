using System.Reflection;
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

    public static Assembly Compile(string sourcePath, HandlerLoadContext loadContext)
    {
        var fileName = Path.GetFileName(sourcePath);
        var tree = CSharpSyntaxTree.ParseText(File.ReadAllText(sourcePath), new CSharpParseOptions(LanguageVersion.Latest), path: fileName, encoding: Encoding.UTF8);
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

        image.Position = 0;
        return loadContext.LoadFromStream(image);
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
