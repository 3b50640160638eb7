using ServeSharp.Archive;
using ServeSharp.Handlers;
using ServeSharp.Loader;
using ServeSharp.Server.Conversion;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Conversion;

/// <summary>Convert's parts that need no torch: the handler skeletons compile in the loader, archives are told apart, options parse.</summary>
public sealed class ConvertPartsTests
{
    private static readonly PythonFunction Postprocess = new() { Name = "postprocess", Line = 9, Source = "def postprocess(self, data):\n    return super().postprocess(data)  # */ \"quotes\" {braces}" };

    private static (HandlerAnalysis Python, bool ServesAsIs) Case(string what) => what switch
    {
        "extends ImageSegmenter" => (new HandlerAnalysis
        {
            File = "handler.py",
            Imports = ["ts.torch_handler.image_segmenter.ImageSegmenter"],
            Classes = [new PythonClass { Name = "MySegmenter", Line = 3, Bases = ["ImageSegmenter"], Methods = [Postprocess] }],
        }, true),
        "extends BaseHandler, class named like a C# keyword" => (new HandlerAnalysis
        {
            File = "my-handler.py",
            Imports = ["torch", "ts.torch_handler.base_handler.BaseHandler"],
            Classes = [new PythonClass
            {
                Name = "object", Line = 5, Bases = ["BaseHandler"],
                Methods = [new() { Name = "preprocess", Line = 6, Source = "def preprocess(self, data):\n    return data" }, Postprocess,
                    new() { Name = "helper", Line = 12, Source = "def helper(self):\n    pass" }],
            }],
        }, false),
        _ => (new HandlerAnalysis
        {
            File = "fn_handler.py",
            Entry = "handle",
            Imports = ["json"],
            Functions = [new() { Name = "handle", Line = 4, Source = "def handle(data, context):\n    return [json.dumps(d) for d in data]" }],
        }, false),
    };

    [Theory]
    [InlineData("extends ImageSegmenter")]
    [InlineData("extends BaseHandler, class named like a C# keyword")]
    [InlineData("a function entry point")]
    public void A_python_handlers_skeleton_compiles_in_the_loader(string what)
    {
        var (python, servesAsIs) = Case(what);
        var skeleton = HandlerSkeleton.Write(python, (224, 224), new HashSet<string>());
        Assert.Equal(servesAsIs, skeleton.ServesAsIs);
        Assert.Contains("//   imports: " + string.Join(", ", python.Imports), skeleton.Source, StringComparison.Ordinal);

        using var dir = new TempDir();
        var model = dir.Sub("model");
        File.WriteAllText(Path.Combine(model, skeleton.FileName), skeleton.Source);
        File.WriteAllText(Path.Combine(model, "model.onnx"), "not loaded: the handler is only compiled here");
        Directory.CreateDirectory(Path.Combine(model, "MAR-INF"));
        File.WriteAllText(Path.Combine(model, "MAR-INF", "MANIFEST.json"),
            $$$"""{"runtime": "python", "model": {"modelName": "m", "serializedFile": "model.onnx", "handler": "{{{skeleton.FileName}}}"} }""");
        using var archive = ModelArchive.Open(model, dir.Sub("x"));
        using var factory = new HandlerResolver(BuiltInHandlers.All).Resolve(archive);
        using var handler = factory.Create();
        Assert.Equal(skeleton.ClassName.TrimStart('@'), handler.GetType().Name);
        Assert.True(handler is ServeSharp.Sdk.IModelHandler, what);
    }

    [Fact]
    public void A_handler_file_with_two_classes_is_refused_as_torchserve_would()
    {
        var python = new HandlerAnalysis { File = "handler.py", Classes = [new PythonClass { Name = "A" }, new PythonClass { Name = "B" }] };
        var e = Assert.Throws<ConversionException>(() => HandlerSkeleton.Write(python, (224, 224), new HashSet<string>()));
        Assert.Contains("handler handler.py defines 2 classes (A, B) and no 'handle' function", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("model.onnx", null, "image_segmenter", "Onnx", false)]
    [InlineData("model.pth", "model.py", "image_segmenter", "Eager", true)]
    [InlineData("model.pt", "model.py", "handler.py", "Eager", true)]
    [InlineData("model.pt", null, "image_segmenter", "TorchScript", true)]
    [InlineData("model.pt", null, "handler.py:handle", "TorchScript", true)]
    [InlineData("model.pth", null, "image_segmenter", "Other", true)]
    [InlineData("model.pt", null, "my_handler.cs", "TorchScript", false)]
    [InlineData("weights.bin", null, "my_handler.dll", "Other", false)]
    public void Archives_are_told_apart_as_torchserve_would_load_them(string serialized, string? modelFile, string handler, string kind, bool needsConversion)
    {
        using var dir = new TempDir();
        var model = dir.Sub("model");
        foreach (var file in new[] { serialized, modelFile }.OfType<string>()) File.WriteAllText(Path.Combine(model, file), "");
        Directory.CreateDirectory(Path.Combine(model, "MAR-INF"));
        var modelFileJson = modelFile is null ? "" : $", \"modelFile\": \"{modelFile}\"";
        File.WriteAllText(Path.Combine(model, "MAR-INF", "MANIFEST.json"),
            $$$"""{"model": {"modelName": "m", "serializedFile": "{{{serialized}}}", "handler": "{{{handler}}}"{{{modelFileJson}}}} }""");
        using var archive = ModelArchive.Open(model, dir.Sub("x"));
        Assert.Equal(kind, TorchServeArchive.KindOf(archive.Model).ToString());
        Assert.Equal(needsConversion, TorchServeArchive.NeedsConversion(archive));
    }

    [Fact]
    public void Conversion_at_registration_is_off_unless_config_properties_turns_it_on()
    {
        Assert.False(ServeSharp.Server.Configuration.ServerConfig.From(new Dictionary<string, string>()).ConvertTorchServeArchives);
        var on = ServeSharp.Server.Configuration.ServerConfig.From(new Dictionary<string, string> { ["convert_torchserve_archives"] = "true" });
        Assert.True(on.ConvertTorchServeArchives);
        Assert.Empty(on.Warnings);
        var e = Assert.Throws<FormatException>(() => ServeSharp.Server.Configuration.ServerConfig.From(new Dictionary<string, string> { ["convert_torchserve_archives"] = "yes" }));
        Assert.Contains("convert_torchserve_archives 'yes' is not true or false", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("224x224", 224, 224)]
    [InlineData("520X480", 520, 480)]
    [InlineData("64,96", 64, 96)]
    public void Input_sizes_parse(string text, int height, int width) => Assert.Equal((height, width), ConvertCommand.InputSize(text));

    [Theory]
    [InlineData("224")]
    [InlineData("16x16")]
    [InlineData("224x-1")]
    [InlineData("axb")]
    public void Bad_input_sizes_are_refused(string text) =>
        Assert.Contains($"--input-size '{text}'", Assert.Throws<ArgumentException>(() => ConvertCommand.InputSize(text)).Message, StringComparison.Ordinal);
}
