using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using ServeSharp.Tests.Support;
using Xunit.Abstractions;

namespace ServeSharp.Tests.Deploy;

/// <summary>Runs only in run-tests.sh's container stage (SERVESHARP_CONTAINER_TESTS=1): it builds an image with podman.</summary>
public sealed class ContainerFactAttribute : FactAttribute
{
    public const string Variable = "SERVESHARP_CONTAINER_TESTS";

    public ContainerFactAttribute()
    {
        if (Environment.GetEnvironmentVariable(Variable) != "1")
            Skip = $"the container stage of run-tests.sh runs it ({Variable}=1): it builds the image with podman";
    }
}

/// <summary>
/// The image as KServe's TorchServe runtime runs it: built offline by tools/container/build, started with the runtime's
/// exact arguments, TS_SERVICE_ENVELOPE and the model mounted read-only in KServe's layout; predictions over TorchServe
/// REST, KServe v1 and OIP v2; then `podman stop` with requests in flight. Ports are free ones (the host's network is
/// shared with other tests), so the mounted config.properties is KServe's sample with other port numbers.
/// </summary>
public sealed partial class ContainerTests(ITestOutputHelper log)
{
    private const string Image = "localhost/servesharp:cpu";
    private const int InFlight = 8;

    [ContainerFact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task The_image_serves_kserves_layout_read_only_and_drains_on_podman_stop()
    {
        var (built, buildOutput) = Repo.Run(Path.Combine(Repo.Root, "tools", "container", "build"), [], Repo.Root, 1800);
        Assert.True(built == 0, "tools/container/build failed:\n" + buildOutput);
        Report(buildOutput.Split('\n').Where(l => l.StartsWith(Image, StringComparison.Ordinal) || l.StartsWith("  ", StringComparison.Ordinal)));

        using var dir = new TempDir();
        var mount = dir.Sub("kserve");
        var (shared, metrics, kserve, grpc, grpcManagement) = (ServerProcess.FreePort(), ServerProcess.FreePort(), ServerProcess.FreePort(), ServerProcess.FreePort(), ServerProcess.FreePort());
        Directory.CreateDirectory(Path.Combine(mount, "config"));
        Directory.CreateDirectory(Path.Combine(mount, "model-store"));
        File.Copy(Path.Combine(Repo.Root, "model-store", "deeplab.mar"), Path.Combine(mount, "model-store", "deeplab.mar"));
        File.WriteAllText(Path.Combine(mount, "config", "config.properties"), $"""
            inference_address=http://0.0.0.0:{shared}
            management_address=http://0.0.0.0:{shared}
            metrics_address=http://0.0.0.0:{metrics}
            grpc_inference_port={grpc}
            grpc_management_port={grpcManagement}
            kserve_address=http://0.0.0.0:{kserve}
            enable_envvars_config=true
            install_py_dep_per_model=true
            enable_metrics_api=true
            metrics_mode=prometheus
            NUM_WORKERS=1
            number_of_netty_threads=4
            job_queue_size=10
            load_models=all
            model_store=/home/model-server/shared/model-store
            """);
        // The container runs as uid 1000: the mount must be readable by others, as a volume KServe fills is.
        const UnixFileMode readable = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        const UnixFileMode traversable = readable | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
        foreach (var path in new[] { mount }.Concat(Directory.EnumerateFileSystemEntries(mount, "*", SearchOption.AllDirectories)))
            File.SetUnixFileMode(path, Directory.Exists(path) ? traversable : readable);
        var before = Listing(mount);

        var name = "servesharp-test-" + Guid.NewGuid().ToString("N")[..8];
        var started = Stopwatch.StartNew();
        var (ran, runOutput) = Podman("run", "-d", "--name", name, "--network", "host", "-e", "TS_SERVICE_ENVELOPE=kservev2",
            "-v", $"{mount}:/mnt/models:ro", Image,
            "torchserve", "--start", "--model-store=/mnt/models/model-store", "--ts-config=/mnt/models/config/config.properties");
        Assert.True(ran == 0, "podman run failed: " + runOutput);
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
            var png = Images.Noise(1024, 768, seed: 16).Png;
            var rest = $"http://127.0.0.1:{shared}/predictions/deeplab";
            HttpStatusCode status = 0;
            while (status != HttpStatusCode.OK)
            {
                Assert.True(started.Elapsed < TimeSpan.FromSeconds(180), "no prediction within 180 s:\n" + Logs(name));
                try
                {
                    using var first = await http.PostAsync(rest, new ByteArrayContent(png));
                    status = first.StatusCode;
                }
                catch (HttpRequestException)
                {
                    // not listening yet
                }
                if (status != HttpStatusCode.OK) await Task.Delay(100);
            }
            var firstPrediction = started.Elapsed;
            Report([$"time to first prediction: {firstPrediction.TotalMilliseconds:F0} ms from podman run (TorchServe REST, a 1024x768 PNG)"]);

            // KServe's protocols on KServe's listener; TorchServe's management on the shared port; Prometheus on metrics.
            var b64 = Convert.ToBase64String(png);
            using (var v2 = await http.PostAsync($"http://127.0.0.1:{kserve}/v2/models/deeplab/infer", Json($$"""{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["{{b64}}"]}]}""")))
            {
                Assert.Equal(HttpStatusCode.OK, v2.StatusCode);
                var output = JsonDocument.Parse(await v2.Content.ReadAsStringAsync()).RootElement.GetProperty("outputs")[0];
                Assert.Equal("classes", output.GetProperty("name").GetString());
            }
            using (var v1 = await http.PostAsync($"http://127.0.0.1:{kserve}/v1/models/deeplab:predict", Json($$"""{"instances": [{"data": "{{b64}}"}]}""")))
                Assert.Equal(HttpStatusCode.OK, v1.StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"http://127.0.0.1:{kserve}/v2/health/ready")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"http://127.0.0.1:{shared}/models/deeplab")).StatusCode);
            Assert.Contains("ts_inference_requests_total", await http.GetStringAsync($"http://127.0.0.1:{metrics}/metrics"));
            var (healthy, healthOutput) = Podman("exec", "-e", $"SERVESHARP_HEALTH_PORT={kserve}", name, "servesharp-healthcheck");
            Assert.True(healthy == 0, "the image's HEALTHCHECK failed: " + healthOutput);

            // Eight predictions of about a second of work each (the whole image, one worker); once the first is answered
            // the other seven, sent with it, are queued or running: then the stop.
            var requests = Enumerable.Range(0, InFlight)
                .Select(_ => http.PostAsync(rest + "?mode=original&output=summary", new ByteArrayContent(png))).ToList();
            await Task.WhenAny(requests).WaitAsync(TimeSpan.FromSeconds(120));
            var (stopped, stopOutput) = Podman("stop", "-t", "30", name);
            Assert.True(stopped == 0, "podman stop failed: " + stopOutput);
            var answers = await Task.WhenAll(requests).WaitAsync(TimeSpan.FromSeconds(60));
            Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.StatusCode));
            var (_, exitCode) = Podman("inspect", name, "--format", "{{.State.ExitCode}}");
            var logs = Logs(name);
            Assert.True(exitCode.Trim() == "0", $"the container exited with {exitCode.Trim()}:\n{logs}");
            var drained = InFlightAtStop().Match(logs);
            Assert.True(drained.Success, "no drain in the log:\n" + logs);
            Report([$"podman stop with {InFlight} requests sent: {drained.Groups[1].Value} in flight at SIGTERM, {InFlight} x 200, exit code 0"]);
            Assert.Equal(before, Listing(mount)); // nothing was written under /mnt/models
        }
        finally
        {
            Podman("rm", "-f", name);
        }
    }

    [GeneratedRegex(@"Stopping: readiness is false and new requests are refused; (\d+) in-flight requests")]
    private static partial Regex InFlightAtStop();

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    private static string Listing(string root) => string.Join('\n', Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
        .Select(p => $"{Path.GetRelativePath(root, p)} {(File.Exists(p) ? new FileInfo(p).Length : -1)} {File.GetLastWriteTimeUtc(p).Ticks.ToString(CultureInfo.InvariantCulture)}"));

    private static string Logs(string name) => Podman("logs", name).Output;

    // The measurements go to the test log and to a file run-tests.sh prints after the stage.
    private void Report(IEnumerable<string> lines)
    {
        var file = Path.Combine(Repo.Root, ".build", "container", "measurements.txt");
        foreach (var line in lines.Where(l => l.Length > 0))
        {
            log.WriteLine(line);
            File.AppendAllText(file, line + "\n");
        }
    }

    // The podman settings these machines need (see tools/container/build, which writes this file unless given one).
    private static readonly Dictionary<string, string> PodmanEnvironment = new()
    {
        ["CONTAINERS_CONF"] = Environment.GetEnvironmentVariable("CONTAINERS_CONF") is { Length: > 0 } given ? given
            : Path.Combine(Repo.Root, ".build", "container", "containers.conf"),
    };

    private static (int ExitCode, string Output) Podman(params string[] args) =>
        Repo.Run("podman", ["--runtime", "/usr/sbin/runc", .. args], Repo.Root, 120, PodmanEnvironment);
}
