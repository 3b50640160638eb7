using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace ServeSharp.Sdk;

/// <summary>
/// Creates ONNX Runtime sessions the way every handler should: full graph optimisation, explicit thread
/// counts (workers share the cores, so oversubscription is the default enemy), and the execution provider
/// chosen from the device type. The CUDA path exists only in builds made with <c>-p:ServeSharpGpu=true</c>.
/// </summary>
public static partial class OrtSessionFactory
{
    /// <summary>True in builds made with <c>-p:ServeSharpGpu=true</c> (the CUDA execution provider is compiled in).</summary>
#if SERVESHARP_CUDA
    public const bool CudaBuilt = true;
#else
    public const bool CudaBuilt = false;
#endif

    /// <summary>Opens <paramref name="modelPath"/> for the worker described by <paramref name="properties"/>.</summary>
    public static InferenceSession Create(string modelPath, SystemProperties properties, ILogger logger)
    {
        using var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            IntraOpNumThreads = properties.IntraOpThreads,
            InterOpNumThreads = properties.InterOpThreads,
        };
        // Spinning threads burn the cores other workers need; a blocked wait costs microseconds per op.
        options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");

        if (properties.DeviceType == "gpu")
        {
#if SERVESHARP_CUDA
            var gpu = properties.GpuId ?? 0;
            options.AppendExecutionProvider_CUDA(gpu);
            LogCuda(logger, modelPath, gpu);
#else
            LogCpuFallback(logger, modelPath);
#endif
        }

        try
        {
            return new InferenceSession(modelPath, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new HandlerLoadException($"{Path.GetFileName(modelPath)}: ONNX Runtime cannot load the model: {e.Message}", e);
        }
    }

#if SERVESHARP_CUDA
    [LoggerMessage(Level = LogLevel.Information, Message = "Loading {Model} on CUDA device {Gpu}")]
    private static partial void LogCuda(ILogger logger, string model, int gpu);
#else
    [LoggerMessage(Level = LogLevel.Warning, Message = "deviceType gpu requested for {Model}, but this build has the CPU ONNX Runtime (build with -p:ServeSharpGpu=true for CUDA); running on CPU")]
    private static partial void LogCpuFallback(ILogger logger, string model);
#endif
}
