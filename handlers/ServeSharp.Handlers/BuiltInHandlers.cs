using ServeSharp.Handlers.Segmentation;
using ServeSharp.Sdk;

namespace ServeSharp.Handlers;

/// <summary>The handlers a manifest can name without shipping code, by TorchServe's names.</summary>
public static class BuiltInHandlers
{
    public static IReadOnlyDictionary<string, Func<IModelHandler>> All { get; } = new Dictionary<string, Func<IModelHandler>>(StringComparer.Ordinal)
    {
        ["image_segmenter"] = () => new ImageSegmenter(),
    };
}
