using System.Runtime.InteropServices;

namespace ServeSharp.Server.Configuration;

/// <summary>
/// The few NVML calls ServeSharp makes (the NVIDIA driver's libnvidia-ml.so.1, loaded at run time so a machine without
/// a driver needs nothing): the device count for number_of_gpu, memory and utilisation for TorchServe's GPU metrics.
/// </summary>
internal static class Nvml
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int InitFn();

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int CountFn(out uint count);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int HandleFn(uint index, out IntPtr device);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int MemoryFn(IntPtr device, out Memory memory);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int UtilizationFn(IntPtr device, out Utilization utilization);

    /// <summary>nvmlMemory_t: bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Memory
    {
        public ulong Total;
        public ulong Free;
        public ulong Used;
    }

    /// <summary>nvmlUtilization_t: percent of the last sample period.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Utilization
    {
        public uint Gpu;
        public uint Memory;
    }

    private sealed record Api(CountFn Count, HandleFn Handle, MemoryFn MemoryInfo, UtilizationFn Utilization);

    private static readonly Lazy<(Api? Api, string How)> Loaded = new(Load);

    /// <summary>Why NVML cannot be used, or null when it can.</summary>
    public static string? Problem => Loaded.Value.Api is null ? Loaded.Value.How : null;

    /// <summary>The devices NVML sees (all of the host's, whatever CUDA_VISIBLE_DEVICES says), and how that was found.</summary>
    public static (int Count, string How) DeviceCount()
    {
        var (api, how) = Loaded.Value;
        if (api is null) return (0, how);
        var status = api.Count(out var count);
        return status == 0 ? ((int)count, $"NVML sees {count}") : (0, $"nvmlDeviceGetCount_v2 failed (NVML error {status})");
    }

    /// <summary>Memory and utilisation of device <paramref name="index"/>, or null when NVML cannot say.</summary>
    public static (Memory Memory, Utilization Utilization)? Sample(int index)
    {
        if (Loaded.Value.Api is not { } api || api.Handle((uint)index, out var device) != 0) return null;
        if (api.MemoryInfo(device, out var memory) != 0 || api.Utilization(device, out var utilization) != 0) return null;
        return (memory, utilization);
    }

    // Loaded once and left initialised for the process (nvmlShutdown would cost a re-init on the next scrape).
    private static (Api?, string) Load()
    {
        if (!NativeLibrary.TryLoad("libnvidia-ml.so.1", out var nvml)) return (null, "no NVIDIA driver (libnvidia-ml.so.1 not found)");
        string[] names = ["nvmlInit_v2", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetUtilizationRates"];
        var exports = new IntPtr[names.Length];
        for (var i = 0; i < names.Length; i++)
        {
            if (!NativeLibrary.TryGetExport(nvml, names[i], out exports[i])) return (null, $"libnvidia-ml.so.1 lacks {names[i]}");
        }
        var status = Marshal.GetDelegateForFunctionPointer<InitFn>(exports[0])();
        if (status != 0) return (null, $"nvmlInit_v2 failed (NVML error {status})");
        return (new Api(Marshal.GetDelegateForFunctionPointer<CountFn>(exports[1]), Marshal.GetDelegateForFunctionPointer<HandleFn>(exports[2]),
            Marshal.GetDelegateForFunctionPointer<MemoryFn>(exports[3]), Marshal.GetDelegateForFunctionPointer<UtilizationFn>(exports[4])), "NVML");
    }
}
