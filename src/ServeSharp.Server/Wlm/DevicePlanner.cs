using ServeSharp.Server.Configuration;

namespace ServeSharp.Server.Wlm;

/// <summary>
/// Decides, at registration, where a model's workers run. TorchServe's rule picks the device type (model-config's
/// deviceType, else gpu when number_of_gpu &gt; 0); this checks that a gpu model can have one: a GPU to assign and a
/// CUDA provider that loads. When it cannot, an explicit <c>deviceType: gpu</c> is refused (400, naming what is
/// missing) and an implicit one runs on CPU with the reason, which describe shows per worker.
/// </summary>
internal sealed class DevicePlanner(ServerConfig config, Func<string?> cudaProblem)
{
    public WorkerSettings Plan(string model, WorkerSettings settings, bool explicitDevice)
    {
        if (settings.DeviceType != "gpu") return settings;
        var problem = Problem(settings);
        if (problem is null) return settings;
        if (explicitDevice)
            throw new BadRequestException($"Model {model} asks for deviceType gpu, which this server cannot give it: {problem}");
        return settings with { DeviceType = "cpu", DeviceIds = [], FallbackReason = problem };
    }

    /// <summary>
    /// <c>precision: fp16</c> is served on GPU workers only: ONNX Runtime's CPU provider on x86 has no float16 Conv
    /// kernel and runs such a graph through Casts to fp32 around every such node, slower than the fp32 model and no more
    /// accurate. Refused (400) when the plan put the workers on CPU, with why they are there.
    /// </summary>
    public static void CheckPrecision(string model, WorkerSettings settings, string? precision)
    {
        if (precision != "fp16" || settings.DeviceType == "gpu") return;
        var why = settings.FallbackReason is { } fallback ? $"its workers fell back to CPU ({fallback})" : "its workers run on CPU (deviceType cpu, or no GPU for the server to give)";
        throw new BadRequestException($"Model {model} has precision: fp16, which is served on GPU workers only, and {why}: ONNX Runtime's CPU provider " +
            "has no float16 Conv kernel on x86 and would run the fp16 graph through casts to fp32, slower than fp32 and no more accurate. Set precision: fp32, or give the model a GPU");
    }

    private string? Problem(WorkerSettings settings)
    {
        var gpus = config.NumberOfGpu ?? 0;
        if (gpus == 0) return "number_of_gpu is 0: no GPU is visible to the server";
        foreach (var id in settings.DeviceIds)
        {
            if (id < 0 || id >= gpus) return $"deviceIds names GPU {id}, but number_of_gpu is {gpus}";
        }
        return cudaProblem() is { } cuda ? $"ONNX Runtime's CUDA provider cannot be used: {cuda}" : null;
    }
}

/// <summary>TorchServe's GPU assignment for a new worker (its WorkLoadManager.addThreads), counters included.</summary>
internal static class GpuAssignment
{
    /// <summary>
    /// Without deviceIds: one counter shared by every model, moved to (previous + 1) mod number_of_gpu and read after
    /// the move, so on a 4-GPU host the first worker gets GPU 1, then 2, 3, 0.
    /// </summary>
    public static int NextShared(ref int counter, int gpus)
    {
        while (true)
        {
            var previous = Volatile.Read(ref counter);
            var next = (previous + 1) % gpus;
            if (Interlocked.CompareExchange(ref counter, next, previous) == previous) return next;
        }
    }

    /// <summary>With deviceIds: the model's own counter, read before it moves, so workers take deviceIds[0], [1], … in turn.</summary>
    public static int NextOwn(ref int counter, int count)
    {
        while (true)
        {
            var previous = Volatile.Read(ref counter);
            if (Interlocked.CompareExchange(ref counter, (previous + 1) % count, previous) == previous) return previous;
        }
    }
}
