using System.CommandLine;
using System.Reflection;

namespace ServeSharp.Server.Cli;

/// <summary>
/// torchserve's command line (ts/arg_parser.py): the same flags and short forms, parsed by System.CommandLine.
/// <c>-v</c>, <c>--start</c> and <c>--stop</c> exclude each other, as there.
/// </summary>
internal sealed record CommandLine
{
    public bool Version { get; init; }
    public bool Start { get; init; }
    public bool Stop { get; init; }
    public bool Foreground { get; init; }
    public bool Help { get; init; }
    public string? ModelStore { get; init; }
    public IReadOnlyList<string> Models { get; init; } = [];
    public string? ConfigFile { get; init; }
    public string? PidFile { get; init; }
    public string? LogConfig { get; init; }
    public bool NoConfigSnapshot { get; init; }
    public bool DisableTokenAuth { get; init; }
    public bool EnableModelApi { get; init; }

    /// <summary>What <c>servesharp -v</c> prints, in torchserve's words.</summary>
    public static string VersionText => $"ServeSharp Version is {ProductVersion}";

    public static string ProductVersion =>
        typeof(CommandLine).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "unknown";

    private static readonly Option<bool> VersionOption = new("--version", "-v") { Description = "print ServeSharp's version" };
    private static readonly Option<bool> StartOption = new("--start") { Description = "start the server in the background, in a session of its own (returns once the APIs answer; logs in logs/)" };
    private static readonly Option<bool> StopOption = new("--stop") { Description = "stop the server started with the same --ts-config / --pid-file (or the only one running); in-flight requests finish first" };
    private static readonly Option<bool> ForegroundOption = new("--foreground") { Description = "with --start: stay attached, log to the console" };
    private static readonly Option<string> ModelStoreOption = new("--model-store") { Description = "where archives are found and downloaded to (overrides model_store)" };
    private static readonly Option<string[]> ModelsOption = new("--models")
    {
        Description = "models to load: NAME=FILE.mar, FILE.mar, a URL, or all (overrides load_models)",
        AllowMultipleArgumentsPerToken = true,
        Arity = ArgumentArity.OneOrMore,
    };
    private static readonly Option<string> ConfigOption = new("--ts-config") { Description = "the config.properties to use (default: $TS_CONFIG_FILE, else ./config.properties)" };
    private static readonly Option<string> PidFileOption = new("--pid-file") { Description = "where --start records the server's pid and --stop finds it (default: one per configuration, in the temp folder)" };
    private static readonly Option<string> LogConfigOption = new("--log-config") { Description = "accepted for torchserve's command lines: the file must exist; its log4j2 settings are not applied" };
    private static readonly Option<string> CppLogConfigOption = new("--cpp-log-config") { Description = "accepted for torchserve's command lines; not used (no C++ backend)" };
    private static readonly Option<string> WorkflowStoreOption = new("--workflow-store") { Description = "not supported: ServeSharp serves models, not workflows" };
    private static readonly Option<string> PluginsPathOption = new("--plugins-path", "--ppath") { Description = "not supported: TorchServe's plugins are Java jars" };
    private static readonly Option<bool> NcsOption = new("--no-config-snapshots", "--ncs") { Description = "do not restore the last config snapshot (nor write new ones)" };
    private static readonly Option<bool> DisableTokenAuthOption = new("--disable-token-auth", "--dt") { Description = "turn token authorization off" };
    private static readonly Option<bool> EnableModelApiOption = new("--enable-model-api") { Description = "allow registering and unregistering models through the management API" };

    private static RootCommand Root()
    {
        var root = new RootCommand("ServeSharp: a TorchServe-compatible model server for semantic segmentation")
        {
            VersionOption, StartOption, StopOption, ForegroundOption, ModelStoreOption, ModelsOption, ConfigOption, PidFileOption,
            LogConfigOption, CppLogConfigOption, WorkflowStoreOption, PluginsPathOption, NcsOption, DisableTokenAuthOption, EnableModelApiOption,
            Conversion.ConvertCommand.Create(),
        };
        // The server's own flags need no subcommand (convert is the only one): without an action of its own, a root command
        // with a subcommand refuses every command line that names none ("Required command was not provided").
        root.SetAction(_ => 0);
        // System.CommandLine's own --version prints a bare number; ours prints torchserve's sentence and also answers -v.
        foreach (var builtIn in root.Options.OfType<System.CommandLine.VersionOption>().ToList()) root.Options.Remove(builtIn);
        return root;
    }

    /// <summary>The generated help text (the same options the parser knows, so it cannot drift from them).</summary>
    public static string Usage
    {
        get
        {
            using var output = new StringWriter();
            Root().Parse(["--help"]).Invoke(new InvocationConfiguration { Output = output });
            return output.ToString().TrimEnd();
        }
    }

    /// <summary>Parses torchserve-style arguments; a mistake is an <see cref="ArgumentException"/> naming it.</summary>
    public static CommandLine Parse(IReadOnlyList<string> args)
    {
        var parsed = Root().Parse(args.ToArray());
        if (parsed.Errors.Count > 0) throw new ArgumentException(string.Join("; ", parsed.Errors.Select(e => e.Message)));
        var result = new CommandLine
        {
            Version = parsed.GetValue(VersionOption),
            Start = parsed.GetValue(StartOption),
            Stop = parsed.GetValue(StopOption),
            Foreground = parsed.GetValue(ForegroundOption),
            Help = args.Any(a => a is "-h" or "--help" or "-?"),
            ModelStore = parsed.GetValue(ModelStoreOption),
            Models = parsed.GetValue(ModelsOption) ?? [],
            ConfigFile = parsed.GetValue(ConfigOption),
            PidFile = parsed.GetValue(PidFileOption),
            LogConfig = parsed.GetValue(LogConfigOption),
            NoConfigSnapshot = parsed.GetValue(NcsOption),
            DisableTokenAuth = parsed.GetValue(DisableTokenAuthOption),
            EnableModelApi = parsed.GetValue(EnableModelApiOption),
        };
        if (new[] { result.Version, result.Start, result.Stop }.Count(b => b) > 1)
            throw new ArgumentException("-v/--version, --start and --stop cannot be used together");
        if (parsed.GetValue(WorkflowStoreOption) is not null)
            throw new ArgumentException("--workflow-store is not supported: ServeSharp serves models, not TorchServe workflows");
        if (parsed.GetValue(PluginsPathOption) is not null)
            throw new ArgumentException("--plugins-path is not supported: TorchServe's plugins are Java jars, which ServeSharp cannot load");
        if (result.LogConfig is { } log && !File.Exists(log))
            throw new ArgumentException($"--log-config file not found: {Path.GetFullPath(log)}");
        return result;
    }
}
