using System.Globalization;
using System.Text;

namespace ServeSharp.Server.Conversion;

/// <summary>The C# handler written in place of a Python one: its file name, class, source, and the hooks left to port.</summary>
internal sealed record Skeleton(string FileName, string ClassName, string Source, bool ServesAsIs, IReadOnlyList<string> NotPorted);

/// <summary>
/// Writes the C# counterpart of a TorchServe Python handler: a class deriving from ServeSharp.Sdk.BaseHandler with the
/// same hooks, each quoting the Python it replaces, and a header listing what the Python handler did (its class and
/// bases, the hooks it defines, its other methods and functions, its imports). It compiles in ServeSharp's loader as
/// written. For a handler extending TorchServe's ImageSegmenter, every hook starts out doing what ImageSegmenter did
/// (ServeSharp's image_segmenter answers the same), so the archive serves at once and the Python overrides are ported
/// one by one; for any other handler, the hooks that need porting answer 501 until they are.
/// </summary>
internal static class HandlerSkeleton
{
    private static readonly string[] Hooks = ["initialize", "preprocess", "inference", "postprocess"];

    public static Skeleton Write(HandlerAnalysis python, (int Height, int Width) inputSize, IReadOnlySet<string> archiveFiles)
    {
        var (className, methods, described) = EntryPoint(python);
        var overridden = Hooks.Where(h => methods.Any(m => m.Name == h)).ToList();
        var others = methods.Where(m => !Hooks.Contains(m.Name)).ToList();
        var delegates = described.Bases.Any(b => b.EndsWith("ImageSegmenter", StringComparison.Ordinal));

        var stem = Path.GetFileNameWithoutExtension(python.File);
        var fileName = stem + ".cs";
        if (archiveFiles.Contains(fileName)) fileName = stem + ".servesharp.cs";

        var s = new StringBuilder();
        Header(s, python, described, overridden, others, fileName, delegates);
        s.Append(delegates ? Delegating(className, methods, overridden, python.File) : Standalone(className, methods, python.File, inputSize));
        Others(s, others, python.File);
        return new Skeleton(fileName, className, s.ToString(), delegates, overridden);
    }

    /// <summary>TorchServe's choice: a module function (the entry after ':' or <c>handle</c>), else the file's one class.</summary>
    private static (string ClassName, IReadOnlyList<PythonFunction> Methods, PythonClass Described) EntryPoint(HandlerAnalysis python)
    {
        var function = python.Entry ?? "handle";
        if (python.Functions.FirstOrDefault(f => f.Name == function) is { } entry)
        {
            var name = Identifier(string.Concat(Path.GetFileNameWithoutExtension(python.File).Split('_', '-', '.').Select(Capitalise))) + "Handler";
            return (name, [entry, .. python.Functions.Where(f => f != entry)], new PythonClass { Name = $"function {entry.Name}", Line = entry.Line });
        }
        if (python.Classes.Count != 1)
            throw new ConversionException(
                $"handler {python.File} defines {python.Classes.Count} classes ({string.Join(", ", python.Classes.Select(c => c.Name))}) and no " +
                $"'{function}' function; TorchServe loads a handler file with exactly one class or a function entry point");
        var cls = python.Classes[0];
        return (Identifier(cls.Name), cls.Methods, cls);
    }

    private static void Header(StringBuilder s, HandlerAnalysis python, PythonClass described, List<string> overridden,
        List<PythonFunction> others, string fileName, bool delegates)
    {
        var bases = described.Bases.Count > 0 ? $"({string.Join(", ", described.Bases)})" : "";
        var kind = described.Name.StartsWith("function ", StringComparison.Ordinal) ? described.Name : $"class {described.Name}{bases}";
        s.AppendLine(CultureInfo.InvariantCulture, $"// {fileName}: the C# handler `servesharp convert` wrote in place of {python.File}, which TorchServe ran in Python.");
        s.AppendLine("// It compiles in ServeSharp's loader as it is; finish it by hand, then archive it again.");
        s.AppendLine("//");
        s.AppendLine(CultureInfo.InvariantCulture, $"// What {python.File} did:");
        s.AppendLine(CultureInfo.InvariantCulture, $"//   {kind} (line {described.Line})");
        s.AppendLine(CultureInfo.InvariantCulture, $"//   hooks it defines: {List(overridden.Select(h => $"{h} (line {LineOf(python, described, h)})"))}");
        s.AppendLine(CultureInfo.InvariantCulture, $"//   other methods and functions: {List(others.Select(m => m.Name))}");
        s.AppendLine(CultureInfo.InvariantCulture, $"//   imports: {List(python.Imports)}");
        s.AppendLine("//");
        if (delegates)
        {
            s.AppendLine("// It extended TorchServe's ImageSegmenter, and so does this handler for now: each hook does what ImageSegmenter");
            s.AppendLine("// did (ServeSharp's built-in image_segmenter answers TorchServe's per-pixel [class, probability] JSON after");
            s.AppendLine("// Resize 256, CenterCrop 224, Normalize), so the model serves at once. The Python of each hook it overrides is");
            s.AppendLine("// quoted in the C# hook that takes its place; until they are ported (then remove them from NotPorted), the model");
            s.AppendLine("// answers as image_segmenter and says so in its log when it starts.");
        }
        else
        {
            s.AppendLine("// Its hooks are quoted below, in the C# hooks that take their place. Initialize opens the converted model.onnx;");
            s.AppendLine("// Inference runs it on a batch; Preprocess and Postprocess answer 501 until they are ported.");
        }
        s.AppendLine(delegates ? "using Microsoft.Extensions.Logging;" : "using Microsoft.ML.OnnxRuntime;");
        s.AppendLine("using ServeSharp.Sdk;");
        s.AppendLine();
        s.AppendLine("namespace Converted;");
        s.AppendLine();
    }

    private static string Delegating(string className, IReadOnlyList<PythonFunction> methods, List<string> overridden, string file)
    {
        var notPorted = string.Join(", ", overridden.Select(h => $"\"{h}\""));
        return $$"""
            public sealed class {{className}} : BaseHandler<InferenceRequest, HandlerOutput>
            {
                // Hooks {{file}} overrides that this file does not do yet.
                private static readonly string[] NotPorted = [{{notPorted}}];

                // ServeSharp's image_segmenter: what ImageSegmenter did. It opens the model's ONNX Runtime session itself, so
                // base.Initialize (which would open a second one) is not called while the hooks hand their work to it.
                private IModelHandler? _segmenter;

                public override void Initialize(HandlerContext context)
                {
            {{Quote(methods, "initialize", file, "ImageSegmenter's: load the model, read index_to_name.json")}}
                    _segmenter = ServeSharp.Handlers.BuiltInHandlers.All["image_segmenter"]();
                    _segmenter.Initialize(context);
                    if (NotPorted.Length > 0)
                        context.Logger.LogWarning("{Handler} was converted from {{file}} and is not finished: {Hooks} not ported yet, so it answers as image_segmenter",
                            nameof({{className}}), string.Join(", ", NotPorted));
                }

                // The request as it came: image_segmenter decodes and preprocesses it in Inference below.
                protected override InferenceRequest Preprocess(InferenceRequest request)
                {
            {{Quote(methods, "preprocess", file, "ImageSegmenter's: decode, Resize 256, CenterCrop 224, ToTensor, Normalize")}}
                    return request;
                }

                // image_segmenter runs the batch (decoding, preprocessing, the model, its answers); it completes synchronously.
                protected override IReadOnlyList<HandlerOutput> Inference(IReadOnlyList<InferenceRequest> inputs, IReadOnlyList<InferenceRequest> requests, CancellationToken cancellationToken)
                {
            {{Quote(methods, "inference", file, "BaseHandler's: the model on the batch")}}
                    return _segmenter!.HandleAsync(requests, cancellationToken).GetAwaiter().GetResult();
                }

                protected override HandlerOutput Postprocess(HandlerOutput output, InferenceRequest request)
                {
            {{Quote(methods, "postprocess", file, "ImageSegmenter's: softmax, max, per-pixel [class, probability]")}}
                    return output;
                }

                protected override void Dispose(bool disposing)
                {
                    if (disposing) _segmenter?.Dispose();
                    base.Dispose(disposing);
                }
            }

            """;
    }

    private static string Standalone(string className, IReadOnlyList<PythonFunction> methods, string file, (int Height, int Width) size) => $$"""
        public sealed class {{className}} : BaseHandler<float[], float[]>
        {
            // The size convert exported and checked the model at; the ONNX model takes other sizes too.
            private const int Height = {{size.Height}}, Width = {{size.Width}};

            public override void Initialize(HandlerContext context)
            {
                base.Initialize(context); // opens model.onnx: "input" float N×3×H×W → "out"
        {{Quote(methods, "initialize", file, "BaseHandler's: load the model")}}
            }

            // One request → one float 3×Height×Width image, normalised as the model expects.
            protected override float[] Preprocess(InferenceRequest request)
            {
        {{Quote(methods, "preprocess", file, "BaseHandler's: torch.as_tensor(data)")}}
                throw new HandlerException(501, "preprocess is not ported from {{file}} yet");
            }

            protected override IReadOnlyList<float[]> Inference(IReadOnlyList<float[]> inputs, IReadOnlyList<InferenceRequest> requests, CancellationToken cancellationToken)
            {
        {{Quote(methods, "inference", file, "BaseHandler's: the model on the batch")}}
                var per = 3 * Height * Width;
                var batch = new float[inputs.Count * per];
                for (var i = 0; i < inputs.Count; i++) inputs[i].CopyTo(batch, i * per);
                using var input = OrtValue.CreateTensorValueFromMemory(batch, [inputs.Count, 3, Height, Width]);
                using var outputs = OrtCancellation.Run(Session!, ["input"], [input], ["out"], cancellationToken);
                var values = outputs[0].GetTensorDataAsSpan<float>();
                var each = values.Length / inputs.Count;
                var result = new float[inputs.Count][];
                for (var i = 0; i < inputs.Count; i++) result[i] = values.Slice(i * each, each).ToArray();
                return result;
            }

            protected override HandlerOutput Postprocess(float[] output, InferenceRequest request)
            {
        {{Quote(methods, "postprocess", file, "BaseHandler's: data.tolist()")}}
                throw new HandlerException(501, "postprocess is not ported from {{file}} yet");
            }
        }

        """;

    private static void Others(StringBuilder s, List<PythonFunction> others, string file)
    {
        if (others.Count == 0) return;
        s.AppendLine();
        var handle = others.Any(o => o.Name == "handle") ? " (handle is TorchServe's whole-batch entry: HandleAsync here)" : "";
        s.AppendLine(CultureInfo.InvariantCulture, $"// The rest of {file}, to port where the hooks need it{handle}:");
        foreach (var other in others)
        {
            s.AppendLine("//");
            foreach (var line in Lines(other.Source)) s.AppendLine("//     " + line);
        }
    }

    /// <summary>The Python hook as a comment at the top of its C# counterpart, or which default it had.</summary>
    private static string Quote(IReadOnlyList<PythonFunction> methods, string hook, string file, string inherited)
    {
        var method = methods.FirstOrDefault(m => m.Name == hook);
        var indent = new string(' ', 8);
        if (method is null) return $"{indent}// {file} does not override {hook} ({inherited}).";
        var s = new StringBuilder($"{indent}// {file}'s {hook} (line {method.Line}), to port:");
        foreach (var line in Lines(method.Source)) s.Append('\n').Append(indent).Append("//     ").Append(line);
        return s.ToString();
    }

    private static IEnumerable<string> Lines(string source) =>
        source.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n').Split('\n').Select(l => l.TrimEnd());

    private static int LineOf(HandlerAnalysis python, PythonClass described, string hook) =>
        (described.Methods.FirstOrDefault(m => m.Name == hook) ?? python.Functions.FirstOrDefault(f => f.Name == hook))?.Line ?? described.Line;

    private static string List(IEnumerable<string> items) => items.Any() ? string.Join(", ", items) : "none";

    private static string Capitalise(string part) => part.Length == 0 ? part : char.ToUpperInvariant(part[0]) + part[1..];

    /// <summary>A C# identifier from a Python name (Python allows what C# keywords would clash with; C# allows '@').</summary>
    private static string Identifier(string name)
    {
        var chars = name.Select(c => char.IsLetterOrDigit(c) || c == '_' ? c : '_').ToArray();
        var id = new string(chars);
        if (id.Length == 0 || char.IsDigit(id[0])) id = "_" + id;
        return Microsoft.CodeAnalysis.CSharp.SyntaxFacts.GetKeywordKind(id) != Microsoft.CodeAnalysis.CSharp.SyntaxKind.None ? "@" + id : id;
    }
}
