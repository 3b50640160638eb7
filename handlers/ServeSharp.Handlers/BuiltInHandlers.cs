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

    /// <summary>
    /// The tensors a built-in handler takes and gives over the Open Inference Protocol, first input first; null for a
    /// handler that has not described them (the server then offers one BYTES input and one BYTES output).
    /// </summary>
    public static (IReadOnlyList<TensorSpec> Inputs, IReadOnlyList<TensorSpec> Outputs)? TensorsOf(string handler) => handler switch
    {
        "image_segmenter" => (
            [new("image", "BYTES", [-1]), new("pixels", "UINT8", [-1, -1, -1, 3]), new("tensor", "FP32", [-1, 3, -1, -1])],
            [new(SegTensors.Classes, "UINT8", [-1, -1, -1]), new(SegTensors.Probabilities, "FP32", [-1, -1, -1, -1])]),
        _ => null,
    };
}
