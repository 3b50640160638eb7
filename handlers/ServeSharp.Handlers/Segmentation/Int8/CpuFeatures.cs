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

    /// <summary>The first <c>flags</c> line of <c>/proc/cpuinfo</c> text, as a set (empty when there is none).</summary>
    public static IReadOnlySet<string> ParseFlags(IEnumerable<string> cpuinfoLines)
    {
        var line = cpuinfoLines.FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal) && l.Contains(':', StringComparison.Ordinal));
        return line is null
            ? new HashSet<string>(StringComparer.Ordinal)
            : line[(line.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
    }

    private static Dictionary<string, bool> Read()
    {
        var result = new Dictionary<string, bool>(StringComparer.Ordinal);
        try
        {
            var flags = ParseFlags(File.ReadLines("/proc/cpuinfo"));
            if (flags.Count == 0) return result;
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
