namespace ServeSharp.Server.Cli;

/// <summary>torchserve's command line: <c>--start</c>/<c>--stop</c> and the options that go with them.</summary>
internal sealed record CommandLine
{
    public bool Start { get; init; }
    public bool Stop { get; init; }
    public bool Foreground { get; init; }
    public bool Help { get; init; }
    public string? ModelStore { get; init; }
    public IReadOnlyList<string> Models { get; init; } = [];
    public string? ConfigFile { get; init; }
    public bool NoConfigSnapshot { get; init; }
    public bool DisableTokenAuth { get; init; }
    public bool EnableModelApi { get; init; }

    public const string Usage = """
        usage: servesharp --start --model-store DIR [--models NAME=FILE.mar ... | all] [--ts-config FILE]
                          [--foreground] [--ncs] [--disable-token-auth] [--enable-model-api]
               servesharp --stop

          --start               start the server in the background (returns once the APIs answer; logs in logs/)
          --foreground          with --start: stay attached, log to the console
          --stop                stop the running server; in-flight requests finish first
          --model-store DIR     where archives are found and downloaded to (overrides model_store)
          --models ...          models to load: NAME=FILE.mar, FILE.mar, or all (overrides load_models)
          --ts-config FILE      the config.properties to use (default: ./config.properties, or $TS_CONFIG_FILE)
          --ncs                 do not restore the last config snapshot
          --disable-token-auth  turn token authorization off
          --enable-model-api    allow registering and unregistering models through the management API
        """;

    public static CommandLine Parse(IReadOnlyList<string> args)
    {
        var result = new CommandLine();
        var models = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            string Value() => i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal)
                ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");

            switch (args[i])
            {
                case "--start": result = result with { Start = true }; break;
                case "--stop": result = result with { Stop = true }; break;
                case "--foreground": result = result with { Foreground = true }; break;
                case "--ncs" or "--no-config-snapshots": result = result with { NoConfigSnapshot = true }; break;
                case "--disable-token-auth": result = result with { DisableTokenAuth = true }; break;
                case "--enable-model-api": result = result with { EnableModelApi = true }; break;
                case "-h" or "--help": result = result with { Help = true }; break;
                case "--model-store": result = result with { ModelStore = Value() }; break;
                case "--ts-config": result = result with { ConfigFile = Value() }; break;
                case "--models":
                    models.Add(Value());
                    while (i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal)) models.Add(args[++i]);
                    break;
                case "--log-config" or "--workflow-store" or "--plugins-path": Value(); break; // accepted for drop-in use; not used
                default: throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }
        if (result.Start && result.Stop) throw new ArgumentException("--start and --stop cannot be used together");
        return result with { Models = models };
    }
}
