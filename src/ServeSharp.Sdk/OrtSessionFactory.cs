using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace ServeSharp.Sdk;

/// <summary>
/// Creates ONNX Runtime sessions the way every handler should: full graph optimisation, explicit thread
/// counts (workers share the cores, so oversubscription is the default enemy), and the execution provider
/// chosen from the device type the server assigned (CUDA on the worker's GPU, or CPU).
/// </summary>
public static partial class OrtSessionFactory
{
    private static readonly Lazy<string?> CudaProblem = new(ProbeCuda);

    /// <summary>
    /// Null when ONNX Runtime's CUDA provider can be used in this process; otherwise why not, in ONNX Runtime's words
    /// (the CPU package, or a CUDA / cuDNN library that is missing: "libcublasLt.so.13: cannot open shared object file").
    /// Probed once.
    /// </summary>
    public static string? CudaUnavailableReason => CudaProblem.Value;

    /// <summary>Opens <paramref name="modelPath"/> for the worker described by <paramref name="properties"/>.</summary>
    public static InferenceSession Create(string modelPath, SystemProperties properties, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(properties);
        using var options = Options(Path.GetFileName(modelPath), properties, logger);
        return Open(Path.GetFileName(modelPath), () => new InferenceSession(modelPath, options));
    }

    /// <summary>
    /// Opens a model held in memory (a graph the handler rewrote at load, such as one with extra outputs) with the same
    /// options as <see cref="Create(string, SystemProperties, ILogger)"/>; <paramref name="name"/> names it in errors.
    /// </summary>
    public static InferenceSession Create(byte[] model, string name, SystemProperties properties, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(properties);
        using var options = Options(name, properties, logger);
        return Open(name, () => new InferenceSession(model, options));
    }

    private static SessionOptions Options(string name, SystemProperties properties, ILogger logger)
    {
        var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            IntraOpNumThreads = properties.IntraOpThreads,
            InterOpNumThreads = properties.InterOpThreads,
        };
        try
        {
            // Spinning threads burn the cores other workers need; a blocked wait costs microseconds per op.
            options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
            if (properties.DeviceType == "gpu")
            {
                var gpu = properties.GpuId ?? 0;
                try
                {
                    options.AppendExecutionProvider_CUDA(gpu);
                }
                catch (OnnxRuntimeException e)
                {
                    // The server checks CUDA before it assigns a GPU: this is a handler run outside it, or a device that failed.
                    throw new HandlerLoadException($"{name}: deviceType gpu, but ONNX Runtime's CUDA provider cannot be used on GPU {gpu}: {e.Message}", e);
                }
                LogCuda(logger, name, gpu);
            }
            return options;
        }
        catch
        {
            options.Dispose();
            throw;
        }
    }

    private static InferenceSession Open(string name, Func<InferenceSession> open)
    {
        try
        {
            return open();
        }
        catch (OnnxRuntimeException e)
        {
            throw new HandlerLoadException($"{name}: ONNX Runtime cannot load the model: {e.Message}", e);
        }
    }

    // Appending the provider loads libonnxruntime_providers_cuda.so and the CUDA libraries it needs; no session, no
    // device memory. The CPU package and a machine without CUDA both fail here, with a message naming what is missing.
    private static string? ProbeCuda()
    {
        try
        {
            using var options = new SessionOptions();
            options.AppendExecutionProvider_CUDA(0);
            return null;
        }
        catch (Exception e) when (e is OnnxRuntimeException or EntryPointNotFoundException or DllNotFoundException)
        {
            return MissingLibrary() ?? e.Message.Trim();
        }
    }

    // ONNX Runtime says only "Failed to load shared library"; the loader's own error names the library that is missing.
    private static string? MissingLibrary()
    {
        var provider = Path.Combine(AppContext.BaseDirectory, "runtimes", $"linux-{System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant()}", "native", "libonnxruntime_providers_cuda.so");
        if (!File.Exists(provider)) provider = Path.Combine(AppContext.BaseDirectory, "libonnxruntime_providers_cuda.so");
        if (!File.Exists(provider)) return "this build has no CUDA provider (libonnxruntime_providers_cuda.so): it was built with the CPU ONNX Runtime package";
        try
        {
            System.Runtime.InteropServices.NativeLibrary.Free(System.Runtime.InteropServices.NativeLibrary.Load(provider));
            return null;
        }
        catch (DllNotFoundException e)
        {
            // .NET's message ends with the loader's line: "libcublasLt.so.13: cannot open shared object file: No such file or directory".
            var loader = e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
            return $"libonnxruntime_providers_cuda.so cannot load: {loader}";
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Loading {Model} on CUDA device {Gpu}")]
    private static partial void LogCuda(ILogger logger, string model, int gpu);
}
