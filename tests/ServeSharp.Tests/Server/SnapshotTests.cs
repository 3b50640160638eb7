using System.Text.Json;
using ServeSharp.Server.Configuration;
using ServeSharp.Tests.Support;
using static ServeSharp.Tests.Server.ManagementFidelityTests;

namespace ServeSharp.Tests.Server;

/// <summary>
/// Config snapshots in TorchServe's format (FSSnapshotSerializer: a Java properties file with model_snapshot, Gson's
/// JSON): one written by hand as TorchServe writes them restores at --start, ours carry TorchServe's fields and read
/// back through java.util.Properties as TorchServe reads them, and --ncs neither writes nor restores.
/// </summary>
[Collection("management")]
public sealed class SnapshotTests : IDisposable
{
    private readonly TempDir _dir = new();

    // As TorchServe 0.12 writes one (its test resources' snapshots, with ServeSharp archives): its config lines, then
    // model_snapshot with Java's escapes; two versions of one model, and a second name for an archive.
    private const string TorchServeSnapshot = """
        #Saving snapshot
        #Tue Mar 31 06:24:29 UTC 2020
        default_response_timeout=120
        enable_envvars_config=true
        number_of_gpu=0
        model_snapshot={\n  "name"\: "20200331062429525-snapshot.cfg",\n  "modelCount"\: 3,\n  "created"\: 1585635869526,\n  "models"\: {\n    "seg"\: {\n      "2.0"\: {\n        "defaultVersion"\: true,\n        "marName"\: "seg-v2.mar",\n        "minWorkers"\: 2,\n        "maxWorkers"\: 3,\n        "batchSize"\: 4,\n        "maxBatchDelay"\: 50,\n        "responseTimeout"\: 60,\n        "startupTimeout"\: 90,\n        "runtimeType"\: "python"\n      },\n      "1.0"\: {\n        "defaultVersion"\: false,\n        "marName"\: "seg-v1.mar",\n        "minWorkers"\: 1,\n        "maxWorkers"\: 1,\n        "batchSize"\: 1,\n        "maxBatchDelay"\: 100,\n        "responseTimeout"\: 120,\n        "startupTimeout"\: 120,\n        "runtimeType"\: "python"\n      }\n    },\n    "seg_copy"\: {\n      "1.0"\: {\n        "defaultVersion"\: true,\n        "marName"\: "seg-v1.mar",\n        "minWorkers"\: 0,\n        "maxWorkers"\: 0,\n        "batchSize"\: 2,\n        "maxBatchDelay"\: 100,\n        "responseTimeout"\: 120,\n        "runtimeType"\: "python3"\n      }\n    }\n  }\n}
        tsConfigFile=config.properties
        disable_token_authorization=true
        enable_model_api=true

        """;

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task A_torchserve_snapshot_in_logs_config_restores_its_models_with_their_settings_at_start()
    {
        var store = SegStore();
        var dir = _dir.Sub("server");
        Directory.CreateDirectory(Path.Combine(dir, "logs", "config"));
        File.WriteAllText(Path.Combine(dir, "logs", "config", "20200331062429525-snapshot.cfg"), TorchServeSnapshot);

        await using var server = ServerProcess.Start(dir, store, ["--disable-token-auth", "--enable-model-api"]);
        await server.WaitHealthyAsync();
        using var m = server.Management;
        var list = JsonDocument.Parse((await SendAsync(m, "GET", "/models")).Body).RootElement.GetProperty("models");
        Assert.Equal(["seg", "seg_copy"], list.EnumerateArray().Select(e => e.GetProperty("modelName").GetString()));

        var seg = await DescribeAsync(m, "/models/seg");
        Assert.Equal(("2.0", 2, 3, 4, 50, 60, 90), (seg.GetProperty("modelVersion").GetString(), seg.GetProperty("minWorkers").GetInt32(), seg.GetProperty("maxWorkers").GetInt32(),
            seg.GetProperty("batchSize").GetInt32(), seg.GetProperty("maxBatchDelay").GetInt32(), seg.GetProperty("responseTimeout").GetInt32(), seg.GetProperty("startupTimeout").GetInt32()));
        Assert.Equal(2, seg.GetProperty("workers").EnumerateArray().Count(w => w.GetProperty("status").GetString() == "READY"));
        Assert.False(seg.GetProperty("loadedAtStartup").GetBoolean()); // TorchServe marks only --models / load_models so
        Assert.Equal(1, (await DescribeAsync(m, "/models/seg/1.0")).GetProperty("minWorkers").GetInt32());
        var copy = await DescribeAsync(m, "/models/seg_copy");
        Assert.Equal(("1.0", 0, 2, "python3"), (copy.GetProperty("modelVersion").GetString(), copy.GetProperty("minWorkers").GetInt32(), copy.GetProperty("batchSize").GetInt32(), copy.GetProperty("runtime").GetString()));

        // At stop, TorchServe's shutdown snapshot; the next start restores from it.
        server.Stop();
        var shutdown = Assert.Single(Directory.GetFiles(Path.Combine(dir, "logs", "config"), "*-shutdown.cfg"));
        Assert.Contains("seg_copy", PropertiesFile.Parse(File.ReadAllText(shutdown))["model_snapshot"]);
        Assert.Single(Directory.GetFiles(Path.Combine(dir, "logs", "config"), "*-startup.cfg"));
    }

    [Fact]
    public async Task A_torchserve_snapshot_given_as_the_config_file_restores_its_models()
    {
        // TorchServe's documented way to go back to a known good snapshot: --ts-config that file. Its model_snapshot wins.
        var json = PropertiesFile.Parse(TorchServeSnapshot)["model_snapshot"].Replace("\n", "", StringComparison.Ordinal);
        await using var server = await InProcessServer.StartAsync(SegStore(), properties: $"model_snapshot={json}");
        await server.WaitReadyAsync("seg", 2);
        using var m = server.Management;
        Assert.Equal(3, (await DescribeAsync(m, "/models/seg")).GetProperty("maxWorkers").GetInt32());
        Assert.Equal(200, (await SendAsync(m, "GET", "/models/seg_copy")).Status);
    }

    [Fact]
    public async Task Our_snapshot_has_torchserves_fields_and_reads_back_through_java_properties()
    {
        var store = SegStore();
        await using (var server = await InProcessServer.StartAsync(store, properties: "job_queue_size=50\nmotd=caf\u00e9 = open: #1"))
        {
            using var m = server.Management;
            Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=seg-v1.mar&batch_size=3&max_batch_delay=40&response_timeout=30&initial_workers=1")).Status);
            Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=seg-v2.mar&runtime=python3&startup_timeout=45")).Status);
            Assert.Equal(200, (await SendAsync(m, "PUT", "/models/seg/2.0/set-default")).Status);
            var file = await LatestSnapshotAsync(server.Directory, s => s.Contains("\"defaultVersion\"\\: true,\\n        \"marName\"\\: \"seg-v2.mar\"", StringComparison.Ordinal));
            var text = await File.ReadAllTextAsync(file);

            // Java's Properties.store: the comment lines, then key=value with \: \= \# and \uXXXX escapes.
            var lines = text.Split('\n');
            Assert.Equal("#Saving snapshot", lines[0]);
            Assert.Matches(@"^#\w{3} \w{3} \d{2} \d{2}:\d{2}:\d{2} UTC \d{4}$", lines[1]);
            Assert.Contains("motd=caf\\u00E9 \\= open\\: \\#1", lines);
            Assert.Contains(lines, l => l.StartsWith("model_snapshot={\\n  \"name\"\\: \"", StringComparison.Ordinal));
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));

            // Read as TorchServe reads it: java.util.Properties, then the JSON.
            Assert.Equal("café = open: #1", Java(file, "motd"));
            Assert.Equal(store, Java(file, "model_store"));
            var snapshot = JsonDocument.Parse(Java(file, "model_snapshot")).RootElement;
            Assert.Equal(["name", "modelCount", "created", "models"], snapshot.EnumerateObject().Select(p => p.Name));
            Assert.Equal(Path.GetFileName(file), snapshot.GetProperty("name").GetString());
            Assert.Equal(2, snapshot.GetProperty("modelCount").GetInt32());
            var v1 = snapshot.GetProperty("models").GetProperty("seg").GetProperty("1.0");
            Assert.Equal(["defaultVersion", "marName", "minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout", "startupTimeout", "runtimeType"],
                v1.EnumerateObject().Select(p => p.Name));
            Assert.Equal((false, "seg-v1.mar", 1, 1, 3, 40, 30, 120, "python"), (v1.GetProperty("defaultVersion").GetBoolean(), v1.GetProperty("marName").GetString(),
                v1.GetProperty("minWorkers").GetInt32(), v1.GetProperty("maxWorkers").GetInt32(), v1.GetProperty("batchSize").GetInt32(), v1.GetProperty("maxBatchDelay").GetInt32(),
                v1.GetProperty("responseTimeout").GetInt32(), v1.GetProperty("startupTimeout").GetInt32(), v1.GetProperty("runtimeType").GetString()));
            var v2 = snapshot.GetProperty("models").GetProperty("seg").GetProperty("2.0");
            Assert.Equal((true, 0, 45, "python3"), (v2.GetProperty("defaultVersion").GetBoolean(), v2.GetProperty("minWorkers").GetInt32(),
                v2.GetProperty("startupTimeout").GetInt32(), v2.GetProperty("runtimeType").GetString()));
        }
    }

    [Fact]
    public async Task No_config_snapshot_neither_writes_nor_restores()
    {
        var store = SegStore();
        var dir = _dir.Sub("server");
        var config = Directory.CreateDirectory(Path.Combine(dir, "logs", "config")).FullName;
        File.WriteAllText(Path.Combine(config, "20200331062429525-snapshot.cfg"), TorchServeSnapshot);

        await using var server = ServerProcess.Start(dir, store, ["--disable-token-auth", "--enable-model-api", "--ncs"]);
        using var m = server.Management;
        Assert.Empty(JsonDocument.Parse((await SendAsync(m, "GET", "/models")).Body).RootElement.GetProperty("models").EnumerateArray());
        Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=seg-v1.mar")).Status);
        server.Stop();
        Assert.Equal(["20200331062429525-snapshot.cfg"], Directory.GetFiles(config).Select(Path.GetFileName));
    }

    // Two versions of one image_segmenter model on the tiny ONNX model; no model-config.yaml.
    private string SegStore()
    {
        var store = _dir.Sub("model-store");
        TestArchives.Write(_dir, store, "seg", "image_segmenter", "", TestModels.Tiny, version: "1.0", fileName: "seg-v1");
        TestArchives.Write(_dir, store, "seg", "image_segmenter", "", TestModels.Tiny, version: "2.0", fileName: "seg-v2");
        return store;
    }

    // Snapshots are written off the request path: wait (bounded) for the one that shows the change.
    private static async Task<string> LatestSnapshotAsync(string serverDirectory, Func<string, bool> shows)
    {
        var folder = Path.Combine(serverDirectory, "logs", "config");
        for (var i = 0; i < 600; i++)
        {
            if (Directory.Exists(folder) && Directory.GetFiles(folder, "*-snapshot.cfg").Order().LastOrDefault() is { } file && shows(await File.ReadAllTextAsync(file)))
                return file;
            await Task.Delay(50);
        }
        throw new TimeoutException("no snapshot showed the change");
    }

    private static string Java(string file, string key)
    {
        var (code, output) = Repo.Run("java", [Path.Combine(Repo.Root, "tests", "fixtures", "snapshot", "ReadProperty.java"), file, key], timeoutSeconds: 120);
        Assert.True(code == 0, output);
        return output;
    }
}
