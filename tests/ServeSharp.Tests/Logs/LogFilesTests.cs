using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using ServeSharp.Server.Logging;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Logs;

/// <summary>The log provider on real files: TorchServe's file names, layouts and routing, and size-based rotation.</summary>
public sealed partial class LogFilesTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public void Defaults_are_TorchServes_appenders_100_MB_keeping_5()
    {
        var options = new LogFileOptions { Directory = "logs", MetricsDirectory = "logs" };
        Assert.Equal(100L * 1024 * 1024, options.MaxFileBytes);
        Assert.Equal(5, options.MaxBackups);
    }

    [Fact]
    public void Each_TorchServe_logger_has_its_file_and_layout_and_everything_reaches_ts_log()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2024, 5, 6, 7, 8, 9, 123, TimeSpan.Zero));
        time.SetLocalTimeZone(TimeZoneInfo.Utc);
        var metrics = _dir.Sub("metrics");
        using (var files = new LogFiles(new LogFileOptions { Directory = _dir.Sub("logs"), MetricsDirectory = metrics }, time: time))
        {
            ILogger access = files.CreateLogger("ACCESS_LOG"), tsMetrics = files.CreateLogger("TS_METRICS"), modelMetrics = files.CreateLogger("MODEL_METRICS");
            Line(access, LogLevel.Information, "/127.0.0.1:5000 \"GET /ping HTTP/1.1\" 200 3");
            Line(tsMetrics, LogLevel.Information, "Requests2XX.Count:1.0|#Level:Host|#hostname:h,timestamp:1714979289");
            Line(modelMetrics, LogLevel.Information, "HandlerTime.ms:2.5|#ModelName:m,Level:Model|#hostname:h,requestID:r1,timestamp:1714979289");
            Line(files.CreateLogger("MODEL_LOG"), LogLevel.Warning, "from the handler");
            Failed(files.CreateLogger("ServeSharp.ModelManager"), new InvalidOperationException("boom"));
        }

        const string stamp = "2024-05-06T07:08:09,123";
        Assert.Equal($"{stamp} - /127.0.0.1:5000 \"GET /ping HTTP/1.1\" 200 3\n", Read("logs", "access_log.log"));
        Assert.Equal($"{stamp} - Requests2XX.Count:1.0|#Level:Host|#hostname:h,timestamp:1714979289\n", Read("metrics", "ts_metrics.log"));
        Assert.StartsWith($"{stamp} - HandlerTime.ms:2.5|#ModelName:m,Level:Model|#hostname:h,requestID:r1", Read("metrics", "model_metrics.log"));
        Assert.Matches($@"^{stamp} \[WARN \] \S+ MODEL_LOG - from the handler\n$", Read("logs", "model_log.log"));
        Assert.False(File.Exists(Path.Combine(_dir.Path, "logs", "ts_metrics.log")), "metrics logs go to METRICS_LOCATION");

        // ts_log.log has every line, in the full layout (TorchServe's root logger), exceptions included.
        var tsLog = Read("logs", "ts_log.log");
        Assert.Contains($"{stamp} [INFO ] ", tsLog);
        Assert.Matches(@"\[INFO \] \S+ ACCESS_LOG - /127\.0\.0\.1:5000", tsLog);
        Assert.Matches(@"\[INFO \] \S+ TS_METRICS - Requests2XX\.Count", tsLog);
        Assert.Matches(@"\[WARN \] \S+ MODEL_LOG - from the handler", tsLog);
        Assert.Matches(@"\[ERROR\] \S+ ServeSharp\.ModelManager - server line\nSystem\.InvalidOperationException: boom", tsLog);
    }

    [Fact]
    public void A_file_rolls_at_its_size_and_keeps_the_newest_N()
    {
        var logs = _dir.Sub("logs");
        using (var files = new LogFiles(new LogFileOptions { Directory = logs, MetricsDirectory = logs, MaxFileBytes = 1000, MaxBackups = 3 }))
        {
            var logger = files.CreateLogger("ACCESS_LOG");
            for (var i = 0; i < 200; i++)
            {
                var line = $"request {i:D4} {new string('x', 40)}";
                Line(logger, LogLevel.Information, line);
            }
        }

        string[] kept = ["access_log.log", "access_log.log.1", "access_log.log.2", "access_log.log.3"];
        Assert.Equal(kept, Directory.GetFiles(logs, "access_log*").Select(Path.GetFileName).Order(StringComparer.Ordinal));
        foreach (var file in kept) Assert.InRange(new FileInfo(Path.Combine(logs, file)).Length, 1, 1000);
        // Read oldest to newest, the kept lines are the last ones written, none lost or repeated between them.
        var numbers = kept.Reverse().SelectMany(f => File.ReadAllLines(Path.Combine(logs, f)))
            .Select(l => int.Parse(l.Split("request ")[1][..4], System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(199, numbers[^1]);
        Assert.Equal(Enumerable.Range(numbers[0], numbers.Count), numbers);
        Assert.True(numbers[0] > 0, "older lines were dropped with the oldest file");
    }

    private string Read(string folder, string name) => File.ReadAllText(Path.Combine(_dir.Path, folder, name));

    public void Dispose() => _dir.Dispose();

    [LoggerMessage(Message = "{Text}")]
    private static partial void Line(ILogger logger, LogLevel level, string text);

    [LoggerMessage(Level = LogLevel.Error, Message = "server line")]
    private static partial void Failed(ILogger logger, Exception error);
}
