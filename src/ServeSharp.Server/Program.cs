using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ServeSharp.Server;
using ServeSharp.Server.Cli;
using ServeSharp.Server.Configuration;
using ServeSharp.Server.Wlm;

if (args is ["worker", .. var workerArgs]) return await ServeSharp.Server.Workers.WorkerHost.RunAsync(workerArgs);

CommandLine cli;
try
{
    cli = CommandLine.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"servesharp: {e.Message}\n{CommandLine.Usage}");
    return 2;
}

if (cli.Help || (!cli.Start && !cli.Stop))
{
    Console.WriteLine(CommandLine.Usage);
    return cli.Help ? 0 : 2;
}

if (cli.Stop)
{
    if (Daemon.RunningPid() is not { } pid)
    {
        Console.WriteLine("ServeSharp is not currently running.");
        return 0;
    }
    Console.WriteLine("ServeSharp is stopping (in-flight requests finish first)...");
    if (!await Daemon.StopAsync(pid, TimeSpan.FromMinutes(5)))
    {
        Console.Error.WriteLine($"ServeSharp (pid {pid}) did not stop within 5 minutes.");
        return 1;
    }
    Console.WriteLine("ServeSharp has stopped.");
    return 0;
}

ServerConfig config;
try
{
    config = LoadConfig(cli);
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
if (Daemon.RunningPid() is { } running && running != Environment.ProcessId)
{
    Console.Error.WriteLine($"ServeSharp is already running (pid {running}); use servesharp --stop to stop it.");
    return 1;
}

var logDirectory = Environment.GetEnvironmentVariable("LOG_LOCATION") is { Length: > 0 } location ? location : "logs";
Directory.CreateDirectory(logDirectory);

if (!cli.Foreground)
{
    var logFile = Path.Combine(logDirectory, "servesharp.log");
    using var child = Daemon.SpawnForeground(args, logFile);
    var ping = new Uri(config.InferenceAddress, "/ping");
    if (!await Daemon.WaitUntilAnsweringAsync(child, ping, TimeSpan.FromSeconds(Math.Max(60, config.DefaultStartupTimeout))))
    {
        Console.Error.WriteLine($"ServeSharp failed to start; see {logFile}:");
        if (File.Exists(logFile)) Console.Error.WriteLine(string.Join('\n', File.ReadLines(logFile).TakeLast(20)));
        return 1;
    }
    Console.WriteLine($"ServeSharp started: inference {config.InferenceAddress}, management {config.ManagementAddress}, metrics {config.MetricsAddress}; logs in {logFile}");
    return 0;
}

using var loggers = LoggerFactory.Create(b => b
    .AddFilter("Microsoft.AspNetCore", LogLevel.Warning)
    .AddSimpleConsole(o =>
    {
        o.SingleLine = true;
        o.TimestampFormat = "yyyy-MM-dd HH:mm:ss.fff ";
    }));
var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
using var stopping = new CancellationTokenSource(); // a signal during start-up cancels the start
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); stopping.Cancel(); });
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); stopping.Cancel(); });

Daemon.WritePid();
try
{
    await using var host = await ServerHost.StartAsync(new StartOptions
    {
        Config = config,
        Models = cli.Models,
        NoConfigSnapshot = cli.NoConfigSnapshot,
        LogDirectory = logDirectory,
    }, loggers, stopping.Token);
    await stop.Task;
    await host.StopAsync();
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
    Daemon.RemovePid();
}

static ServerConfig LoadConfig(CommandLine cli)
{
    var file = cli.ConfigFile ?? Environment.GetEnvironmentVariable("TS_CONFIG_FILE");
    if (file is null && File.Exists("config.properties")) file = "config.properties";
    if (file is not null && !File.Exists(file)) throw new IOException($"config file '{file}' does not exist");
    var properties = file is null ? [] : PropertiesFile.Parse(File.ReadAllText(file));
    var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
        .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "");
    var config = ServerConfig.From(properties, environment);
    return config with
    {
        ModelStore = cli.ModelStore ?? config.ModelStore,
        DisableTokenAuthorization = cli.DisableTokenAuth || config.DisableTokenAuthorization,
        EnableModelApi = cli.EnableModelApi || config.EnableModelApi,
    };
}

internal static partial class ProgramLog
{
    [LoggerMessage(EventId = 5, Level = LogLevel.Critical, Message = "ServeSharp could not start")]
    public static partial void CouldNotStart(ILogger logger, Exception error);
}
