using ServeSharp.Archive;

namespace ServeSharp.Server.Conversion;

/// <summary>How TorchServe's BaseHandler would load an archive's model.</summary>
internal enum TorchModelKind
{
    /// <summary>Already ONNX: nothing to convert.</summary>
    Onnx,
    /// <summary>A model file (model.py) and a state dict: TorchServe's eager loading.</summary>
    Eager,
    /// <summary>A .pt without a model file: torch.jit.load.</summary>
    TorchScript,
    /// <summary>Something torch would load but convert does not (a .pth without model file, a .so, ...).</summary>
    Other,
}

/// <summary>Reads a TorchServe archive's manifest the way TorchServe's model loader does, for convert and for registration.</summary>
internal static class TorchServeArchive
{
    /// <summary>TorchServe's image_segmenter, which ServeSharp's built-in of the same name answers like.</summary>
    public const string ImageSegmenter = "image_segmenter";

    private static readonly string[] TorchExtensions = [".pt", ".pth", ".bin", ".ckpt", ".pkl", ".tar"];

    /// <summary>TorchServe's order: a model file means eager; else a .pt is TorchScript; .onnx is served as it is.</summary>
    public static TorchModelKind KindOf(ManifestModel model)
    {
        var serialized = model.SerializedFile ?? "";
        if (serialized.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)) return TorchModelKind.Onnx;
        if (model.ModelFile is not null) return TorchModelKind.Eager;
        if (serialized.EndsWith(".pt", StringComparison.Ordinal)) return TorchModelKind.TorchScript;
        return TorchModelKind.Other;
    }

    /// <summary>The handler's Python file (<c>handler.py</c> of <c>handler.py:fn</c>), or null for a built-in's name.</summary>
    public static string? PythonHandlerFile(string handler)
    {
        var file = handler.Split(':', 2)[0];
        return file.EndsWith(".py", StringComparison.OrdinalIgnoreCase) ? file : null;
    }

    /// <summary>
    /// True for an archive TorchServe would serve with torch and ServeSharp cannot: a TorchServe handler (image_segmenter
    /// or a .py file) over a model that is not ONNX. Archives with C# handlers are left to their handler.
    /// </summary>
    public static bool NeedsConversion(ModelArchive archive)
    {
        var model = archive.Model;
        var torchHandler = model.Handler == ImageSegmenter || PythonHandlerFile(model.Handler ?? "") is not null;
        var torchModel = KindOf(model) is TorchModelKind.Eager or TorchModelKind.TorchScript
            || (KindOf(model) == TorchModelKind.Other && TorchExtensions.Any(e => (model.SerializedFile ?? "").EndsWith(e, StringComparison.OrdinalIgnoreCase)));
        return torchHandler && torchModel;
    }

    /// <summary>How the manifest describes the model, for messages: "serializedFile model.pth, modelFile model.py".</summary>
    public static string Describe(ManifestModel model) =>
        string.Join(", ", new[] { ("serializedFile", model.SerializedFile), ("modelFile", model.ModelFile), ("handler", model.Handler) }
            .Where(p => p.Item2 is not null).Select(p => $"{p.Item1} {p.Item2}"));
}
