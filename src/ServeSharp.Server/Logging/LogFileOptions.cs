namespace ServeSharp.Server.Logging;

/// <summary>
/// Where TorchServe's log4j2.xml puts its logs, and when a file rolls: <c>LOG_LOCATION</c> (default <c>logs</c>) for
/// ts_log, model_log and access_log, <c>METRICS_LOCATION</c> (default <c>logs</c>) for ts_metrics and model_metrics;
/// a file rolls at 100 MB and 5 rolled files are kept, as TorchServe's appenders do.
/// </summary>
internal sealed record LogFileOptions
{
    public required string Directory { get; init; }
    public required string MetricsDirectory { get; init; }

    /// <summary>The size at which a file is rolled to <c>NAME.1</c> (TorchServe: 100 MB).</summary>
    public long MaxFileBytes { get; init; } = 100L * 1024 * 1024;

    /// <summary>How many rolled files are kept, <c>NAME.1</c> (newest) to <c>NAME.N</c> (TorchServe: 5).</summary>
    public int MaxBackups { get; init; } = 5;

    public static LogFileOptions FromEnvironment() => new()
    {
        Directory = Location("LOG_LOCATION"),
        MetricsDirectory = Location("METRICS_LOCATION"),
    };

    private static string Location(string variable) =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } location ? location : "logs";
}
