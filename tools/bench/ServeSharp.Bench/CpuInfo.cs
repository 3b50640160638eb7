using ServeSharp.Handlers.Segmentation.Int8;

namespace ServeSharp.Bench;

/// <summary>What /proc/cpuinfo says about the SIMD the kernels can use, and the core count: every results section records it.</summary>
public sealed record CpuInfo(string Model, bool Avx2, bool Fma, bool Avx512, bool Vnni, string VnniFlags, int Cores)
{
    public static CpuInfo FromText(string cpuinfo, int cores)
    {
        var lines = cpuinfo.Split('\n');
        string Field(string name) => lines.FirstOrDefault(l => l.StartsWith(name, StringComparison.Ordinal) && l.Contains(':', StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?";
        var flags = CpuFeatures.ParseFlags(lines);
        // VNNI comes as AVX512_VNNI (Cascade Lake, Zen 4) or AVX-VNNI (Alder Lake, Zen 5 also lists it).
        var vnni = flags.Where(f => f is "avx512_vnni" or "avx_vnni").Order(StringComparer.Ordinal).ToArray();
        return new CpuInfo(Field("model name"), flags.Contains("avx2"), flags.Contains("fma"), flags.Contains("avx512f"), vnni.Length > 0, string.Join(' ', vnni), cores);
    }

    public static CpuInfo ThisMachine() =>
        FromText(File.Exists("/proc/cpuinfo") ? File.ReadAllText("/proc/cpuinfo") : "", Environment.ProcessorCount);

    /// <summary>"AMD EPYC ...: AVX2 yes, FMA yes, AVX-512 no, VNNI no; 2 cores".</summary>
    public override string ToString() =>
        $"{Model}: AVX2 {YesNo(Avx2)}, FMA {YesNo(Fma)}, AVX-512 {YesNo(Avx512)}, VNNI {(Vnni ? $"yes ({VnniFlags})" : "no")}; {Cores} cores";

    private static string YesNo(bool b) => b ? "yes" : "no";
}
