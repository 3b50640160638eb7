using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.Extensions.Logging.Abstractions;
using ServeSharp.Archive;
using ServeSharp.Loader;
using ServeSharp.Sdk;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Loader;

/// <summary>Handlers named by the manifest: .cs compiled at load, .dll in a collectible context, built-ins, and refusals.</summary>
public sealed class HandlerLoadingTests
{
    private static readonly string Fixtures = Path.Combine(Repo.Root, "tests", "fixtures", "handlers");

    private static readonly HandlerResolver Resolver = new(new Dictionary<string, Func<IModelHandler>>
    {
        ["echo_builtin"] = () => new EchoHandler(),
    });

    [Fact]
    public async Task Cs_handler_compiles_and_runs_its_hooks_on_a_real_onnx_model()
    {
        using var tmp = new TempDir();
        using var archive = MakeArchive(tmp, Path.Combine(Fixtures, "linear_handler.cs"));
        using var factory = Resolver.Resolve(archive);
        using var handler = factory.Create();
        handler.Initialize(Context(archive));

        var batch = new[] { Request("1,2,3"), Request("not,numbers"), Request("0,0,-1") };
        var outputs = await handler.HandleAsync(batch, CancellationToken.None);

        Assert.Equal(3, outputs.Count);
        Assert.Equal("1,2,3,-6;argmax=2;greeting=hello", Text(outputs[0]));
        Assert.Equal("text/x-linear", batch[0].Response.ContentType);
        // The bad request fails alone, with TorchServe's error JSON and a 400.
        Assert.Equal(400, outputs[1].StatusCode);
        Assert.Equal(400, batch[1].Response.StatusCode);
        Assert.Contains("\"type\": \"BadRequestException\"", Text(outputs[1]));
        Assert.Contains("expected three numbers", Text(outputs[1]));
        Assert.Equal("0,0,-1,1;argmax=3;greeting=hello", Text(outputs[2]));
    }

    [Fact]
    public async Task Dll_handler_loads_runs_and_unloads_with_its_model()
    {
        using var tmp = new TempDir();
        var dll = CompileDll(Path.Combine(Fixtures, "linear_handler.cs"), tmp.File("LinearHandler.dll"));
        var weak = await LoadRunAndUnload(tmp, dll + ":Fixtures.LinearHandler");

        for (var i = 0; i < 20 && weak.IsAlive; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.False(weak.IsAlive, "the handler's AssemblyLoadContext was not collected after the model was unloaded");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static async Task<WeakReference> LoadRunAndUnload(TempDir tmp, string handler)
    {
        using var archive = MakeArchive(tmp, handler);
        var factory = Resolver.Resolve(archive);
        Assert.Equal("LinearHandler.dll:Fixtures.LinearHandler", factory.Description);
        var weak = new WeakReference(factory.LoadContext);
        using (var instance = factory.Create())
        {
            instance.Initialize(Context(archive));
            var outputs = await instance.HandleAsync([Request("3,1,2")], CancellationToken.None);
            Assert.Equal("3,1,2,-6;argmax=0;greeting=hello", Text(outputs[0]));
        }
        factory.Dispose();
        return weak;
    }

    [Fact]
    public void Broken_cs_handler_returns_the_compiler_error_with_file_and_line()
    {
        using var tmp = new TempDir();
        using var archive = MakeArchive(tmp, Path.Combine(Fixtures, "broken_handler.cs"));
        var error = Assert.Throws<HandlerLoadException>(() => Resolver.Resolve(archive));
        Assert.Contains("handler broken_handler.cs does not compile", error.Message);
        Assert.Contains("broken_handler.cs(7,28): error CS0103: The name 'undefinedVariable' does not exist in the current context", error.Message);
    }

    [Fact]
    public async Task Several_handler_classes_need_a_name_and_the_named_one_is_used()
    {
        using var tmp = new TempDir();
        using (var archive = MakeArchive(tmp, Path.Combine(Fixtures, "two_handlers.cs")))
        {
            var error = Assert.Throws<HandlerLoadException>(() => Resolver.Resolve(archive));
            Assert.Contains("several handler classes (Fixtures.First, Fixtures.Second)", error.Message);
        }

        using var named = MakeArchive(tmp, Path.Combine(Fixtures, "two_handlers.cs") + ":Fixtures.Second", "named");
        using var factory = Resolver.Resolve(named);
        using var handler = factory.Create();
        var outputs = await handler.HandleAsync([Request("x")], CancellationToken.None);
        Assert.Equal("second", Text(outputs[0]));

        using var wrong = MakeArchive(tmp, Path.Combine(Fixtures, "two_handlers.cs") + ":Fixtures.Third", "wrong");
        Assert.Contains("has no public class 'Fixtures.Third'", Assert.Throws<HandlerLoadException>(() => Resolver.Resolve(wrong)).Message);
    }

    [Fact]
    public void Python_handlers_are_refused_with_the_alternatives_named()
    {
        using var tmp = new TempDir();
        var py = tmp.File("my_handler.py");
        File.WriteAllText(py, "def handle(data, context):\n    return data\n");
        using var archive = MakeArchive(tmp, py);
        var error = Assert.Throws<HandlerLoadException>(() => Resolver.Resolve(archive));
        Assert.Contains("'my_handler.py' is a Python handler, which ServeSharp cannot run", error.Message);
        Assert.Contains("echo_builtin", error.Message);
        Assert.Contains(".cs file", error.Message);
    }

    [Fact]
    public void An_archive_with_a_requirements_file_is_refused_naming_it_as_nothing_would_install_it()
    {
        using var tmp = new TempDir();
        var requirements = tmp.File("requirements.txt");
        File.WriteAllText(requirements, "numpy\n");
        var mar = ArchiveWriter.Write(new ArchiveSpec { ModelName = "req", Handler = "echo_builtin", SerializedFile = TestModels.Tiny, RequirementsFile = requirements, ExportPath = tmp.Sub("export-req") });
        using var archive = ModelArchive.Open(mar, tmp.Sub("extract-req"));
        var error = Assert.Throws<HandlerLoadException>(() => Resolver.Resolve(archive));
        Assert.Contains("requirements file ('requirements.txt'", error.Message);
        Assert.Contains("Archive it again without -r", error.Message);
    }

    [Fact]
    public async Task Built_in_names_resolve_without_loading_anything()
    {
        using var tmp = new TempDir();
        using var archive = MakeArchive(tmp, "echo_builtin");
        using var factory = Resolver.Resolve(archive);
        Assert.Null(factory.LoadContext);
        using var handler = factory.Create();
        var outputs = await handler.HandleAsync([Request("abc")], CancellationToken.None);
        Assert.Equal("abc", Text(outputs[0]));

        using var unknown = MakeArchive(tmp, "image_classifier", "unknown");
        Assert.Contains("neither a built-in (echo_builtin)", Assert.Throws<HandlerLoadException>(() => Resolver.Resolve(unknown)).Message);
    }

    private static ModelArchive MakeArchive(TempDir tmp, string handler, string name = "custom")
    {
        var config = tmp.File("model-config.yaml");
        File.WriteAllText(config, "handler:\n  greeting: hello\n");
        var export = tmp.Sub("export-" + name);
        var mar = ArchiveWriter.Write(new ArchiveSpec { ModelName = name, Handler = handler, SerializedFile = TestModels.Tiny, ConfigFile = config, ExportPath = export });
        return ModelArchive.Open(mar, tmp.Sub("extract-" + name));
    }

    private static HandlerContext Context(ModelArchive archive) =>
        HandlerContexts.For(archive, new SystemProperties { IntraOpThreads = 1 }, NullLogger.Instance);

    private static InferenceRequest Request(string body) => InferenceRequest.FromBody(Encoding.UTF8.GetBytes(body));

    private static string Text(HandlerOutput output) => Encoding.UTF8.GetString(output.Body.Span);

    /// <summary>Builds a handler .dll the way a user's build would: Roslyn, against the SDK and the framework.</summary>
    private static string CompileDll(string source, string output)
    {
        var tpa = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator);
        var compilation = CSharpCompilation.Create(
            Path.GetFileNameWithoutExtension(output),
            [
                CSharpSyntaxTree.ParseText(File.ReadAllText(source), new CSharpParseOptions(LanguageVersion.Latest)),
                CSharpSyntaxTree.ParseText("global using System; global using System.Collections.Generic; global using System.Linq; global using System.Threading; global using System.Threading.Tasks;"),
            ],
            tpa.Select(p => MetadataReference.CreateFromFile(p)),
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        var result = compilation.Emit(output);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        return output;
    }

    private sealed class EchoHandler : IModelHandler
    {
        public void Initialize(HandlerContext context) { }

        public Task<IReadOnlyList<HandlerOutput>> HandleAsync(IReadOnlyList<InferenceRequest> batch, CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyList<HandlerOutput>>(batch.Select(r => HandlerOutput.Bytes(r.Data!.Value, "application/octet-stream")).ToArray());

        public void Dispose() { }
    }
}
