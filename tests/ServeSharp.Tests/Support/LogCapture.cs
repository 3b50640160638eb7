using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace ServeSharp.Tests.Support;

/// <summary>A logger factory that keeps every message at warning level and above, so a test can read what the server logged.</summary>
internal sealed class LogCapture : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    public LogCapture() => Factory = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Warning).AddProvider(this));

    public ILoggerFactory Factory { get; }

    public IReadOnlyList<string> Lines => [.. _lines];

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose() { }

    private sealed class Logger(LogCapture owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)}");
    }
}
