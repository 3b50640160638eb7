using ServeSharp.Bench;

namespace ServeSharp.Bench.Tests;

public sealed class CpuInfoTests
{
    [Theory]
    [InlineData("AMD EPYC 7B13 64-Core Processor", "fpu sse2 avx fma avx2 bmi2", false, false, "")]
    [InlineData("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "avx2 fma avx512f avx512bw avx512_vnni amx_tile", true, true, "avx512_vnni")]
    [InlineData("12th Gen Intel(R) Core(TM) i7-1270P", "avx2 fma avx_vnni", false, true, "avx_vnni")]
    public void Flags_come_from_the_first_processor(string model, string flags, bool avx512, bool vnni, string vnniFlags)
    {
        var text = $"processor\t: 0\nvendor_id\t: x\nmodel name\t: {model}\nflags\t\t: {flags}\n\nprocessor\t: 1\nmodel name\t: {model}\nflags\t\t: {flags}\n";

        var cpu = CpuInfo.FromText(text, 2);

        Assert.Equal(model, cpu.Model);
        Assert.True(cpu.Avx2);
        Assert.Equal(avx512, cpu.Avx512);
        Assert.Equal(vnni, cpu.Vnni);
        Assert.Equal(vnniFlags, cpu.VnniFlags);
        Assert.EndsWith("; 2 cores", cpu.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void This_machine_is_described()
    {
        var cpu = CpuInfo.ThisMachine();

        Assert.Equal(Environment.ProcessorCount, cpu.Cores);
        Assert.Contains("AVX-512", cpu.ToString(), StringComparison.Ordinal);
    }
}
