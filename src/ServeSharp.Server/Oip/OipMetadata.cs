using ServeSharp.Handlers;
using ServeSharp.Sdk;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Oip;

/// <summary>What OIP v2 metadata says about the server and a model, for REST and gRPC alike.</summary>
internal static class OipMetadata
{
    public const string ServerName = "servesharp";

    /// <summary>The protocol extensions served: the REST binary tensor data extension.</summary>
    public static readonly string[] Extensions = ["binary_tensor_data"];

    public static string ServerVersion { get; } =
        typeof(OipMetadata).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    // A handler that has not described its tensors takes one BYTES input per instance and gives its body back as BYTES.
    private static readonly (IReadOnlyList<TensorSpec>, IReadOnlyList<TensorSpec>) Generic =
        ([new TensorSpec("data", "BYTES", [-1])], [new TensorSpec("output", "BYTES", [-1])]);

    public static (IReadOnlyList<TensorSpec> Inputs, IReadOnlyList<TensorSpec> Outputs) TensorsOf(Model model) => Described(model) ?? Generic;

    /// <summary>The tensors of a handler that describes them; null for one that does not (its outputs are whatever it answers).</summary>
    public static (IReadOnlyList<TensorSpec> Inputs, IReadOnlyList<TensorSpec> Outputs)? Described(Model model) =>
        BuiltInHandlers.TensorsOf(model.HandlerOverride ?? model.Archive.Manifest.Model?.Handler ?? "");

    /// <summary>ONNX Runtime for an ONNX model (Triton's platform name), else the handler's own runtime.</summary>
    public static string PlatformOf(Model model) =>
        model.Archive.Manifest.Model?.SerializedFile?.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) == true ? "onnxruntime_onnx" : "servesharp";

    /// <summary>Ready for inference: the model serves and a worker is up.</summary>
    public static bool IsReady(Model model) => model.State == ModelState.Ready && model.ReadyWorkerCount > 0;
}
