using System.Runtime.InteropServices;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using ServeSharp.Server;
using ServeSharp.Server.Cli;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Logging;
using ServeSharp.Server.Metrics;
using ServeSharp.Server.Wlm;

if (args is ["worker", .. var workerArgs]) return await ServeSharp.Server.Workers.WorkerHost.RunAsync(workerArgs);
if (args is [ServeSharp.Server.Conversion.ConvertCommand.Name, ..]) return await ServeSharp.Server.Conversion.ConvertCommand.RunAsync(args);

CommandLine cli;
try
{
    cli = CommandLine.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"servesharp: {e.Message}\n(servesharp --help lists the options)");
    return 2;
}

if (cli.Help || args.Length == 0)
{
    Console.WriteLine(CommandLine.Usage);
    return cli.Help ? 0 : 2;
}
if (cli.Version)
{
    Console.WriteLine(CommandLine.VersionText);
    return 0;
}

// As torchserve: TS_CONFIG_FILE, else --ts-config, else ./config.properties when there is one.
var configFile = Environment.GetEnvironmentVariable("TS_CONFIG_FILE") is { Length: > 0 } fromEnvironment ? fromEnvironment : cli.ConfigFile;
configFile ??= File.Exists("config.properties") ? "config.properties" : null;
var identity = configFile is not null ? Path.GetFullPath(configFile) : cli.ModelStore is not null ? Path.GetFullPath(cli.ModelStore) : Directory.GetCurrentDirectory();
var pidFile = Daemon.PidFileFor(cli.PidFile, identity);

if (cli.Stop) return await StopAsync(cli, pidFile, configFile);

ServerConfig config;
try
{
    config = LoadConfig(cli, configFile);
}
catch (Exception e) when (e is FormatException or IOException)
{
    Console.Error.WriteLine($"servesharp: {e.Message}");
    return 2;
}
if (config.ModelStore is null && cli.Models.Count > 0)
{
    Console.Error.WriteLine("servesharp: --model-store is required (or model_store in config.properties)");
    return 2;
}
if (Daemon.RunningPid(pidFile) is { } running && running != Environment.ProcessId)
{
    Console.Error.WriteLine($"ServeSharp is already running with this configuration (pid {running}, {identity}); use servesharp --stop to stop it.");
    return 1;
}

// TorchServe's log files (ts_log, model_log, access_log, ts_metrics, model_metrics) in LOG_LOCATION / METRICS_LOCATION.
var logs = LogFileOptions.FromEnvironment();
Directory.CreateDirectory(logs.Directory);
var tsLog = Path.Combine(logs.Directory, "ts_log.log");

if (!cli.Foreground)
{
    // The detached server logs to ts_log.log itself; its raw stdout/stderr (what the runtime prints when it dies before
    // it can log) go to servesharp.out beside it.
    var consoleFile = Path.Combine(logs.Directory, "servesharp.out");
    long tsLogBefore = FileLength(tsLog), consoleBefore = FileLength(consoleFile);
    using var child = Daemon.SpawnForeground(args, consoleFile);
    var ping = new Uri(config.InferenceAddress, "/ping");
    X509Certificate2? certificate;
    try
    {
        certificate = config.InferenceAddress.Scheme == "https" ? TlsCertificate.Load(config) : null;
    }
    catch (FormatException e)
    {
        Console.Error.WriteLine($"servesharp: {e.Message}");
        return 2;
    }
    using var _ = certificate;
    if (!await Daemon.WaitUntilAnsweringAsync(child, pidFile, ping, certificate, TimeSpan.FromSeconds(Math.Max(60, config.DefaultStartupTimeout))))
    {
        Console.Error.WriteLine($"ServeSharp failed to start; see {tsLog}:");
        Console.Error.Write(Tail(tsLog, tsLogBefore));
        Console.Error.Write(Tail(consoleFile, consoleBefore));
        return 1;
    }
    Console.WriteLine($"ServeSharp started: inference {config.InferenceAddress}, management {config.ManagementAddress}, metrics {config.MetricsAddress}; logs in {Path.GetFullPath(logs.Directory)}");
    return 0;
}

var detached = Daemon.DetachIfSpawned();
// --foreground prints every line on the console too, as TorchServe's STDOUT appender does; detached, nobody reads it.
using var logFiles = new LogFiles(logs, detached ? null : Console.Out);
using var loggers = LoggerFactory.Create(b => b
    .AddFilter("Microsoft.AspNetCore", LogLevel.Warning)
    .AddProvider(logFiles));
var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
using var stopping = new CancellationTokenSource(); // a signal during start-up cancels the start
using var now = new CancellationTokenSource(); // a second signal ends the drain: in-flight requests are aborted
void OnSignal(PosixSignalContext signal)
{
    signal.Cancel = true;
    if (!stop.TrySetResult()) now.Cancel();
    stopping.Cancel();
}
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);

Daemon.WritePid(pidFile, identity);
try
{
    await using var host = await ServerHost.StartAsync(new StartOptions
    {
        Config = config,
        Models = cli.Models,
        NoConfigSnapshot = cli.NoConfigSnapshot,
        LogDirectory = logs.Directory,
    }, loggers, stopping.Token);
    await stop.Task;
    await host.StopAsync(now.Token);
    return 0;
}
catch (OperationCanceledException) when (stopping.IsCancellationRequested)
{
    return 0;
}
catch (Exception e) when (e is IOException or FormatException or InvalidOperationException)
{
    var logger = loggers.CreateLogger("ServeSharp");
    ProgramLog.CouldNotStart(logger, e);
    return 1;
}
finally
{
    Daemon.RemovePid(pidFile);
}

static async Task<int> StopAsync(CommandLine cli, string pidFile, string? configFile)
{
    var pid = Daemon.RunningPid(pidFile);
    if (pid is null && !Daemon.IsExplicit(cli.PidFile) && cli.ConfigFile is null && Environment.GetEnvironmentVariable("TS_CONFIG_FILE") is null)
    {
        // --stop alone, as torchserve users type it: the one server running, whatever it was started with.
        var servers = Daemon.RunningServers();
        if (servers.Count > 1)
        {
            Console.Error.WriteLine("Several ServeSharp servers are running; name one with --ts-config FILE (as it was started) or --pid-file FILE:");
            foreach (var (file, p, started) in servers) Console.Error.WriteLine($"  pid {p}: {started} (pid file {file})");
            return 1;
        }
        pid = servers.Count == 1 ? servers[0].Pid : null;
    }
    if (pid is not { } running)
    {
        Console.WriteLine(configFile is null ? "ServeSharp is not currently running." : $"ServeSharp is not currently running with {Path.GetFullPath(configFile)}.");
        return 0;
    }
    Console.WriteLine("ServeSharp is stopping (in-flight requests finish first)...");
    if (!await Daemon.StopAsync(running, TimeSpan.FromMinutes(5)))
    {
        Console.Error.WriteLine($"ServeSharp (pid {running}) did not stop within 5 minutes.");
        return 1;
    }
    Console.WriteLine("ServeSharp has stopped.");
    return 0;
}

static long FileLength(string file) => File.Exists(file) ? new FileInfo(file).Length : 0;

// What a file gained since the start began (its last 40 lines), so a failed start shows this start's reasons only.
static string Tail(string file, long from)
{
    if (!File.Exists(file)) return "";
    using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
    stream.Position = from <= stream.Length ? from : 0; // rolled meanwhile: the new file is all this start's
    var lines = new StreamReader(stream).ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
    return string.Concat(lines.TakeLast(40).Select(l => l + "\n"));
}

static ServerConfig LoadConfig(CommandLine cli, string? file)
{
    if (file is not null && !File.Exists(file)) throw new IOException($"--ts-config file not found: {Path.GetFullPath(file)}");
    var properties = file is null ? [] : PropertiesFile.Parse(File.ReadAllText(file));
    var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
        .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "");
    var config = ServerConfig.From(properties, environment, new CommandLineSettings
    {
        ModelStore = cli.ModelStore,
        DisableTokenAuthorization = cli.DisableTokenAuth,
        EnableModelApi = cli.EnableModelApi,
        LogConfig = cli.LogConfig,
    });
    // A metrics.yaml the server could not use is refused here, where the user who typed --start reads the reason.
    ServerMetrics.Check(MetricsConfiguration.Load(config.MetricsConfig));
    return config;
}

internal static partial class ProgramLog
{
    [LoggerMessage(EventId = 5, Level = LogLevel.Critical, Message = "ServeSharp could not start")]
    public static partial void CouldNotStart(ILogger logger, Exception error);
}
