using ServeSharp.Server.Metrics;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Metrics;

/// <summary>psutil's formulas on a /proc we write, and on this machine's.</summary>
public sealed class SystemMetricsTests : IDisposable
{
    private readonly TempDir _proc = new();

    [Fact]
    public void Cpu_and_memory_follow_psutil()
    {
        // user nice system idle iowait irq softirq steal guest guest_nice
        File.WriteAllText(_proc.File("stat"), "cpu  600 0 200 1000 200 0 0 0 50 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n");
        File.WriteAllText(_proc.File("meminfo"), """
            MemTotal:        8000000 kB
            MemFree:         1000000 kB
            MemAvailable:    3000000 kB
            Buffers:          500000 kB
            Cached:          1500000 kB
            SReclaimable:     250000 kB
            """);
        var system = new SystemMetrics(_proc.Path);

        var first = system.Sample();
        Assert.Equal(40.0, first.CpuUtilization); // since boot: busy 800 of 2000 (guest is inside user)
        Assert.Equal((8000000 - 1000000 - 1750000 - 500000) / 1024.0, first.MemoryUsedMegabytes, 6);
        Assert.Equal(3000000 / 1024.0, first.MemoryAvailableMegabytes, 6);
        Assert.Equal(62.5, first.MemoryUtilization); // (total - available) / total

        File.WriteAllText(_proc.File("stat"), "cpu  1500 0 200 1000 300 0 0 0 50 0\n");
        Assert.Equal(90.0, system.Sample().CpuUtilization); // since the last reading: busy 900 of 1000
    }

    [Fact]
    public void This_machines_readings_are_sane()
    {
        var sample = new SystemMetrics().Sample();
        Assert.InRange(sample.CpuUtilization, 0, 100);
        Assert.True(sample.MemoryUsedMegabytes > 0 && sample.MemoryAvailableMegabytes > 0);
        Assert.InRange(sample.MemoryUtilization, 0.1, 100);
        Assert.True(sample.DiskUsedGigabytes > 0 && sample.DiskAvailableGigabytes >= 0);
        Assert.InRange(sample.DiskUtilization, 0.1, 100);
    }

    public void Dispose() => _proc.Dispose();
}
