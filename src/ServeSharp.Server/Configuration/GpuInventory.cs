namespace ServeSharp.Server.Configuration;

/// <summary>
/// How many GPUs this process can use, for number_of_gpu's default: NVML's device count (libnvidia-ml, which the
/// NVIDIA driver installs), narrowed by CUDA_VISIBLE_DEVICES as the CUDA runtime narrows it. 0 without a driver.
/// </summary>
internal static class GpuInventory
{
    /// <summary>The GPUs visible to this process, and how that was found (for the start-up log).</summary>
    public static (int Count, string How) Detect()
    {
        var (physical, how) = Nvml.DeviceCount();
        var visible = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES");
        var count = Visible(visible, physical);
        return (count, visible is null ? how : $"{how}; CUDA_VISIBLE_DEVICES={visible}");
    }

    /// <summary>
    /// CUDA's reading of CUDA_VISIBLE_DEVICES: unset, every device; otherwise the listed ones (indices or GPU-/MIG- UUIDs)
    /// up to the first entry that names no device ("", "-1" or "none" hide them all).
    /// </summary>
    internal static int Visible(string? cudaVisibleDevices, int physical)
    {
        if (cudaVisibleDevices is null) return physical;
        var count = 0;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in cudaVisibleDevices.Split(',', StringSplitOptions.TrimEntries))
        {
            var valid = int.TryParse(entry, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var index)
                ? index < physical
                : entry.StartsWith("GPU-", StringComparison.Ordinal) || entry.StartsWith("MIG-", StringComparison.Ordinal);
            if (!valid || !seen.Add(entry)) break;
            count++;
        }
        return Math.Min(count, Math.Max(physical, 0));
    }
}
