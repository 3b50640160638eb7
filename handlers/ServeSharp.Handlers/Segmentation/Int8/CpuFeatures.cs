namespace ServeSharp.Handlers.Segmentation.Int8;

/// <summary>
/// The CPU features int8 speed depends on, as the kernel reports them (<c>/proc/cpuinfo</c>): ONNX Runtime's u8s8
/// kernels use AVX512-VNNI or AVX-VNNI (one instruction per 4 multiply-adds) where present, and plain AVX2/AVX-512
/// otherwise, where int8 is often no faster than fp32.
/// </summary>
public static class CpuFeatures
{
    private static readonly string[] Interesting = ["avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"];

    /// <summary>Each interesting flag and whether this CPU has it (empty off Linux).</summary>
    public static IReadOnlyDictionary<string, bool> Flags { get; } = Read();

    /// <summary>Whether the CPU has a VNNI instruction set (AVX512-VNNI or AVX-VNNI).</summary>
    public static bool HasVnni => Flags.GetValueOrDefault("avx512_vnni") || Flags.GetValueOrDefault("avx_vnni");

    private static Dictionary<string, bool> Read()
    {
        var result = new Dictionary<string, bool>(StringComparer.Ordinal);
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal));
            if (line is null) return result;
            var flags = line[(line.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
            foreach (var flag in Interesting) result[flag] = flags.Contains(flag);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return result;
    }
}
