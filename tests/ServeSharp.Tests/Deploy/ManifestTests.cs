using System.Text.Json.Nodes;
using ServeSharp.Server.Configuration;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Deploy;

/// <summary>
/// Every manifest under deploy/ against the schemas of the APIs it targets (vendored in schemas/, see its README), the
/// validator's own teeth, and the manifests against the server they deploy: arguments, ports, probe paths, grace periods.
/// </summary>
public sealed class ManifestTests
{
    private static readonly ManifestValidator Validator = new();
    private static readonly string DeployDirectory = Path.Combine(Repo.Root, "deploy");

    private static IEnumerable<string> ManifestFiles() =>
        Directory.EnumerateFiles(DeployDirectory, "*.*", SearchOption.AllDirectories)
            .Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".yml", StringComparison.Ordinal))
            .Select(f => Path.GetRelativePath(DeployDirectory, f)).Order(StringComparer.Ordinal);

    public static TheoryData<string> Manifests() => [.. ManifestFiles()];

    [Theory]
    [MemberData(nameof(Manifests))]
    public void Every_manifest_is_valid_against_the_schema_of_its_kind(string file)
    {
        var documents = ManifestValidator.Documents(File.ReadAllText(Path.Combine(DeployDirectory, file)));
        Assert.NotEmpty(documents);
        foreach (var document in documents)
        {
            var errors = Validator.Validate(document);
            Assert.True(errors.Count == 0, $"{file}: {document?["kind"]} {document?["metadata"]?["name"]}:\n  " + string.Join("\n  ", errors));
        }
    }

    [Fact]
    public void Deploy_has_the_kserve_runtimes_inference_services_and_the_plain_kubernetes_set()
    {
        var kinds = ManifestFiles().SelectMany(f => ManifestValidator.Documents(File.ReadAllText(Path.Combine(DeployDirectory, f)))
            .Select(d => $"{Path.GetDirectoryName(f)}/{d!["kind"]}")).ToHashSet();
        foreach (var expected in new[] { "kserve/ServingRuntime", "kserve/ClusterServingRuntime", "kserve/InferenceService", "k8s/Deployment", "k8s/Service", "k8s/ConfigMap", "k8s/ScaledObject" })
            Assert.Contains(expected, kinds);
    }

    public static TheoryData<string, string, string, string> Mutations => new()
    {
        // file, JSON path to set (a/b/0/c), new value as JSON ("-" removes it), the error expected
        { "k8s/deployment.yaml", "spec/replicas", "\"two\"", "spec.replicas: must be integer" },
        { "k8s/deployment.yaml", "spec/template/spec/containers/0/imagePullPolicey", "\"Always\"", "spec.template.spec.containers[0].imagePullPolicey: unknown field" },
        { "k8s/deployment.yaml", "spec/selector", "-", "spec.selector: required" },
        { "k8s/deployment.yaml", "spec/template/spec/containers/0/resources/limits/cpu", "true", "must be" },
        { "k8s/deployment.yaml", "metadata/labelz", "{}", "metadata.labelz: unknown field" },
        { "k8s/service.yaml", "spec/ports/0/port", "\"http\"", "spec.ports[0].port: must be integer" },
        { "kserve/inferenceservice.yaml", "spec/predictor/model/storageUrl", "\"pvc://x\"", "spec.predictor.model.storageUrl: unknown field" },
        { "kserve/inferenceservice.yaml", "spec/predictor/minReplicas", "\"one\"", "spec.predictor.minReplicas: must be integer" },
        { "kserve/clusterservingruntime.yaml", "spec/containers", "-", "spec.containers: required" },
        { "kserve/clusterservingruntime.yaml", "spec/supportedModelFormats/0/priority", "0", "below the minimum 1" },
        { "kserve/servingruntime.yaml", "metadata/annotationz", "{}", "metadata.annotationz: unknown field" },
        { "k8s/scaledobject.yaml", "spec/triggers/0/metadata/threshold", "2", "spec.triggers[0].metadata.threshold: must be string" },
        { "k8s/scaledobject.yaml", "spec/scaleTargetRef", "-", "spec.scaleTargetRef: required" },
    };

    [Theory]
    [MemberData(nameof(Mutations))]
    public void The_validator_refuses_what_the_api_server_would(string file, string path, string value, string expected)
    {
        var document = ManifestValidator.Documents(File.ReadAllText(Path.Combine(DeployDirectory, file)))[0]!;
        Assert.Empty(Validator.Validate(document));
        var steps = path.Split('/');
        var parent = steps[..^1].Aggregate(document, (node, step) => int.TryParse(step, out var i) ? node[i]! : node[step]!);
        if (value == "-") parent.AsObject().Remove(steps[^1]);
        else parent[steps[^1]] = JsonNode.Parse(value);
        Assert.Contains(Validator.Validate(document), e => e.Contains(expected, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("prometheus.io/scrape: on", "must be string")] // YAML 1.1: on is a boolean to the API server
    [InlineData("prometheus.io/port: 8082", "must be string")]
    public void Unquoted_yaml_scalars_are_typed_as_kubectl_types_them(string annotation, string expected)
    {
        var yaml = $"apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  annotations:\n    {annotation}\nspec:\n  ports:\n    - port: 80\n";
        Assert.Contains(Validator.Validate(ManifestValidator.Documents(yaml)[0]), e => e.Contains(expected, StringComparison.Ordinal));
        Assert.Equal(["no schema for example.com/v1 Widget"], Validator.Validate(ManifestValidator.Documents("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")[0]));
    }

    [Theory]
    [InlineData("kserve/servingruntime.yaml")]
    [InlineData("kserve/clusterservingruntime.yaml")]
    public void The_kserve_runtimes_start_the_image_as_kserves_torchserve_runtime_does(string file)
    {
        var spec = ManifestValidator.Documents(File.ReadAllText(Path.Combine(DeployDirectory, file)))[0]!["spec"]!;
        var container = spec["containers"]![0]!;
        Assert.Equal(["torchserve", "--start", "--model-store=/mnt/models/model-store", "--ts-config=/mnt/models/config/config.properties"],
            container["args"]!.AsArray().Select(a => (string)a!));
        Assert.Equal("{{.Labels.serviceEnvelope}}", (string)container["env"]!.AsArray().Single(e => (string)e!["name"]! == "TS_SERVICE_ENVELOPE")!["value"]!);
        Assert.Equal("kserve-container", (string)container["name"]!);
        Assert.Equal(["v1", "v2", "grpc-v2"], spec["protocolVersions"]!.AsArray().Select(p => (string)p!));
        Assert.Equal("pytorch", (string)spec["supportedModelFormats"]![0]!["name"]!);
        Assert.Equal("8082", (string)spec["annotations"]!["prometheus.kserve.io/port"]!);
        // Probes on KServe's port, on health routes the KServe listener serves.
        foreach (var probe in new[] { "readinessProbe", "livenessProbe" })
        {
            Assert.Equal(8080, (int)container[probe]!["httpGet"]!["port"]!);
            Assert.Contains((string)container[probe]!["httpGet"]!["path"]!, (string[])["/v2/health/ready", "/v2/health/live", "/ping"]);
        }
        Assert.Equal(1000, (int)container["securityContext"]!["runAsUser"]!); // the image's model-server user
    }

    [Fact]
    public void The_plain_deployment_matches_its_configuration_and_drains_within_its_grace_period()
    {
        var config = ManifestValidator.Documents(File.ReadAllText(Path.Combine(DeployDirectory, "k8s", "configmap.yaml")))[0]!;
        var server = ServerConfig.From(PropertiesFile.Parse((string)config["data"]!["config.properties"]!), new Dictionary<string, string>());
        Assert.Empty(server.Warnings);
        var pod = ManifestValidator.Documents(File.ReadAllText(Path.Combine(DeployDirectory, "k8s", "deployment.yaml")))[0]!["spec"]!["template"]!["spec"]!;
        var container = pod["containers"]![0]!;
        var ports = container["ports"]!.AsArray().ToDictionary(p => (string)p!["name"]!, p => (int)p!["containerPort"]!);
        Assert.Equal(server.InferenceAddress.Port, ports["http"]);
        Assert.Equal(server.MetricsAddress.Port, ports["metrics"]);
        Assert.Equal(server.GrpcInference.Port, ports["grpc"]);
        Assert.Equal("0.0.0.0", server.InferenceAddress.Host);
        Assert.Equal("/mnt/models/model-store", server.ModelStore);
        Assert.Contains(container["volumeMounts"]!.AsArray(), m => (string)m!["mountPath"]! == "/mnt/models" && (bool)m["readOnly"]!);
        foreach (var probe in new[] { "startupProbe", "readinessProbe", "livenessProbe" })
        {
            Assert.Equal("http", (string)container[probe]!["httpGet"]!["port"]!);
            Assert.Contains((string)container[probe]!["httpGet"]!["path"]!, (string[])["/ping", "/v2/health/ready", "/v2/health/live"]);
        }
        // preStop, then the server's drain, then its models and snapshot: all before Kubernetes' SIGKILL.
        var preStop = int.Parse((string)container["lifecycle"]!["preStop"]!["exec"]!["command"]![1]!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(preStop + server.ShutdownGracePeriod < (int)pod["terminationGracePeriodSeconds"]!);
        Assert.Equal(["torchserve", "--start", "--ts-config=/etc/servesharp/config.properties"], container["args"]!.AsArray().Select(a => (string)a!));
    }
}
