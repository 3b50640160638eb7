using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;

namespace ServeSharp.Server.Logging;

/// <summary>
/// TorchServe's log4j2.xml as a logger provider: every category goes to <c>ts_log.log</c> (and the console, in
/// --foreground), and TorchServe's named loggers also to their own files — <c>ACCESS_LOG</c> to access_log.log,
/// <c>MODEL_LOG</c> (handler and worker output) to model_log.log, <c>TS_METRICS</c> to ts_metrics.log and
/// <c>MODEL_METRICS</c> to model_metrics.log — with TorchServe's layouts, so log pipelines built on its files keep
/// parsing them.
/// </summary>
internal sealed class LogFiles : ILoggerProvider
{
    public const string AccessLog = "ACCESS_LOG";
    public const string ModelLog = "MODEL_LOG";
    public const string TsMetrics = "TS_METRICS";
    public const string ModelMetrics = "MODEL_METRICS";

    private readonly RollingFile _tsLog, _modelLog, _accessLog, _tsMetrics, _modelMetrics;
    private readonly TextWriter? _console;
    private readonly TimeProvider _time;

    /// <param name="console">Where --foreground prints every line (TorchServe's STDOUT appender); null when detached.</param>
    public LogFiles(LogFileOptions options, TextWriter? console = null, TimeProvider? time = null)
    {
        RollingFile File(string directory, string name) => new(Path.Combine(directory, name), options.MaxFileBytes, options.MaxBackups);
        _tsLog = File(options.Directory, "ts_log.log");
        _modelLog = File(options.Directory, "model_log.log");
        _accessLog = File(options.Directory, "access_log.log");
        _tsMetrics = File(options.MetricsDirectory, "ts_metrics.log");
        _modelMetrics = File(options.MetricsDirectory, "model_metrics.log");
        _console = console;
        _time = time ?? TimeProvider.System;
    }

    public ILogger CreateLogger(string categoryName) => new FileLogger(this, categoryName, categoryName switch
    {
        AccessLog => _accessLog,
        ModelLog => _modelLog,
        TsMetrics => _tsMetrics,
        ModelMetrics => _modelMetrics,
        _ => null,
    });

    public void Dispose()
    {
        foreach (var file in (RollingFile[])[_tsLog, _modelLog, _accessLog, _tsMetrics, _modelMetrics]) file.Dispose();
    }

    private void Write(string category, LogLevel level, string message, Exception? exception, RollingFile? own)
    {
        // log4j2's %d{ISO8601}, in local time as log4j prints it.
        var stamp = _time.GetLocalNow().ToString("yyyy-MM-dd'T'HH:mm:ss,fff", CultureInfo.InvariantCulture);
        var line = new StringBuilder(stamp.Length + message.Length + 64)
            .Append(stamp).Append(" [").Append(LevelName(level)).Append("] ").Append(ThreadName()).Append(' ')
            .Append(category).Append(" - ").Append(message).Append('\n');
        if (exception is not null) line.Append(exception).Append('\n');
        var full = line.ToString();
        _tsLog.Append(full);
        _console?.Write(full);
        if (own is null) return;
        // The access and metrics logs carry the bare message ("%d{ISO8601} - %m%n"); the model log, the full layout.
        own.Append(own == _modelLog ? full : $"{stamp} - {message}\n");
    }

    // log4j's level names, padded as its %-5p pads them.
    private static string LevelName(LogLevel level) => level switch
    {
        LogLevel.Trace => "TRACE",
        LogLevel.Debug => "DEBUG",
        LogLevel.Information => "INFO ",
        LogLevel.Warning => "WARN ",
        LogLevel.Error => "ERROR",
        _ => "FATAL",
    };

    // %t: our own threads have names (a worker's is W-<id>-<model>); pool threads get one without spaces, so the
    // line still splits into TorchServe's fields.
    private static string ThreadName() =>
        Thread.CurrentThread.Name is { Length: > 0 } name && !name.Contains(' ', StringComparison.Ordinal)
            ? name
            : "thread-" + Environment.CurrentManagedThreadId.ToString(CultureInfo.InvariantCulture);

    private sealed class FileLogger(LogFiles files, string category, RollingFile? own) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            files.Write(category, logLevel, formatter(state, exception), exception, own);
        }
    }
}
