using System.Globalization;

namespace ServeSharp.Server.Metrics;

/// <summary>One reading of TorchServe's host metrics, in its units: percent (to one decimal, as psutil rounds them),
/// megabytes of memory, gigabytes of disk.</summary>
internal readonly record struct SystemSample(
    double CpuUtilization, double MemoryUsedMegabytes, double MemoryAvailableMegabytes, double MemoryUtilization,
    double DiskUsedGigabytes, double DiskAvailableGigabytes, double DiskUtilization);

/// <summary>
/// What TorchServe's ts/metrics/system_metrics.py measures with psutil, read the way psutil reads it on Linux:
/// CPU from /proc/stat (busy share of the time since the previous reading; the first reading covers the time since
/// boot), memory from /proc/meminfo (used = total − free − buffers − cache; utilisation from MemAvailable) and the disk
/// holding "/" from statvfs (used against used + what unprivileged users may still write).
/// </summary>
internal sealed class SystemMetrics(string proc = "/proc", string disk = "/")
{
    private const double MB = 1024.0 * 1024.0, GB = 1024.0 * 1024.0 * 1024.0;
    private (double Total, double Busy) _previousCpu;

    public SystemSample Sample()
    {
        var cpu = CpuUtilization(File.ReadAllText(Path.Combine(proc, "stat")));
        var (used, available, memoryPercent) = Memory(File.ReadAllText(Path.Combine(proc, "meminfo")));
        var drive = new DriveInfo(disk);
        double diskUsed = drive.TotalSize - drive.TotalFreeSpace, diskFree = drive.AvailableFreeSpace;
        return new SystemSample(cpu, used / MB, available / MB, memoryPercent,
            diskUsed / GB, diskFree / GB, Percent(diskUsed, diskUsed + diskFree));
    }

    // "cpu  user nice system idle iowait irq softirq steal guest guest_nice": guest time is already in user and nice,
    // and idle and iowait are not busy (psutil's cpu_percent).
    private double CpuUtilization(string stat)
    {
        var fields = stat[..stat.IndexOf('\n', StringComparison.Ordinal)].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        double Field(int i) => i < fields.Length && double.TryParse(fields[i], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : 0;
        double total = 0;
        for (var i = 1; i <= 8; i++) total += Field(i);
        var busy = total - Field(4) - Field(5);
        var (previousTotal, previousBusy) = _previousCpu;
        _previousCpu = (total, busy);
        var elapsed = total - previousTotal;
        return elapsed <= 0 ? 0 : Math.Clamp(Math.Round(100 * (busy - previousBusy) / elapsed, 1), 0, 100);
    }

    private static (double Used, double Available, double Percent) Memory(string meminfo)
    {
        var kb = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in meminfo.Split('\n'))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0) continue;
            var value = line[(colon + 1)..].Trim().Split(' ')[0];
            if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v)) kb[line[..colon]] = v * 1024;
        }
        double Get(string key) => kb.GetValueOrDefault(key);
        double total = Get("MemTotal"), free = Get("MemFree"), buffers = Get("Buffers"), cached = Get("Cached") + Get("SReclaimable");
        var available = kb.TryGetValue("MemAvailable", out var a) ? a : free + buffers + cached;
        var used = total - free - cached - buffers;
        if (used < 0) used = total - free;
        return (used, available, Percent(total - available, total));
    }

    private static double Percent(double part, double whole) => whole <= 0 ? 0 : Math.Round(100 * part / whole, 1);
}
