using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ServeSharp.Tests.Support;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace ServeSharp.Tests.Deploy;

/// <summary>
/// Validates Kubernetes manifests without a cluster, as `kubectl apply --validate=strict` would reject them: each
/// document against the schema of its apiVersion and kind (Kubernetes' OpenAPI definitions for built-in kinds, the
/// CRD's openAPIV3Schema for KServe's and KEDA's, all vendored under schemas/). Unknown fields are errors unless the
/// schema keeps them (additionalProperties, x-kubernetes-preserve-unknown-fields); types, enums, required fields,
/// patterns and bounds are checked; CEL rules (x-kubernetes-validations) are not.
/// </summary>
internal sealed partial class ManifestValidator
{
    private static readonly string SchemaDirectory = Path.Combine(Repo.Root, "tests", "ServeSharp.Tests", "Deploy", "schemas");
    private const string QuantityRef = "io.k8s.apimachinery.pkg.api.resource.Quantity";
    private const string ObjectMetaRef = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

    private readonly JsonObject _definitions;
    private readonly Dictionary<(string Group, string Version, string Kind), JsonNode> _roots = [];

    public ManifestValidator()
    {
        _definitions = JsonNode.Parse(File.ReadAllText(Path.Combine(SchemaDirectory, "kubernetes.json")))!["definitions"]!.AsObject();
        foreach (var (name, definition) in _definitions)
        {
            foreach (var gvk in definition!["x-kubernetes-group-version-kind"]?.AsArray() ?? [])
                _roots[((string)gvk!["group"]!, (string)gvk["version"]!, (string)gvk["kind"]!)] = new JsonObject { ["$ref"] = "#/definitions/" + name };
        }
        foreach (var file in Directory.GetFiles(SchemaDirectory, "*.json").Where(f => Path.GetFileName(f) != "kubernetes.json"))
        {
            var crd = JsonNode.Parse(File.ReadAllText(file))!;
            foreach (var (version, schema) in crd["versions"]!.AsObject())
                _roots[((string)crd["group"]!, version, (string)crd["kind"]!)] = schema!;
        }
    }

    /// <summary>The kinds there is a schema for, as "group/version Kind".</summary>
    public IEnumerable<string> Kinds => _roots.Keys.Select(k => $"{(k.Group.Length == 0 ? "" : k.Group + "/")}{k.Version} {k.Kind}");

    /// <summary>Every document of a YAML stream, as the API server would read it (YAML 1.1 scalars, as go-yaml resolves them).</summary>
    public static IReadOnlyList<JsonNode?> Documents(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return [.. stream.Documents.Select(d => ToJson(d.RootNode))];
    }

    /// <summary>The problems of one document (empty when it is valid), each with its path.</summary>
    public IReadOnlyList<string> Validate(JsonNode? document)
    {
        var errors = new List<string>();
        if (document is not JsonObject o || o["apiVersion"]?.GetValueKind() != JsonValueKind.String || o["kind"]?.GetValueKind() != JsonValueKind.String)
            return ["not a Kubernetes object (apiVersion and kind are required)"];
        var apiVersion = (string)o["apiVersion"]!;
        var slash = apiVersion.LastIndexOf('/');
        var key = (slash < 0 ? "" : apiVersion[..slash], apiVersion[(slash + 1)..], (string)o["kind"]!);
        if (!_roots.TryGetValue(key, out var schema)) return [$"no schema for {apiVersion} {key.Item3}"];
        if (o["metadata"]?["name"] is null) errors.Add("metadata.name: required");
        Check(o, schema, "", errors);
        // A CRD's schema leaves metadata open; the API server checks it as ObjectMeta all the same.
        if (schema["$ref"] is null && o["metadata"] is { } metadata) Check(metadata, new JsonObject { ["$ref"] = "#/definitions/" + ObjectMetaRef }, ".metadata", errors);
        return errors;
    }

    private void Check(JsonNode? value, JsonNode schema, string path, List<string> errors)
    {
        if (schema["$ref"] is { } reference)
        {
            var name = ((string)reference!).Split('/')[^1];
            // A Quantity is written as a string or a number (cpu: 1), as the API server's decoder accepts it.
            if (name == QuantityRef && value?.GetValueKind() is JsonValueKind.Number) return;
            Check(value, _definitions[name] ?? throw new InvalidOperationException($"schemas: no definition {name}"), path, errors);
            return;
        }
        if (value is null)
        {
            if (schema["nullable"]?.GetValue<bool>() != true && schema["type"] is not null) errors.Add($"{Where(path)}: null is not allowed");
            return;
        }
        var kind = value.GetValueKind();
        var intOrString = schema["x-kubernetes-int-or-string"]?.GetValue<bool>() == true || (string?)schema["format"] == "int-or-string";
        if (intOrString)
        {
            if (!(kind == JsonValueKind.String || IsInteger(value))) errors.Add($"{Where(path)}: must be an integer or a string, not {Describe(value)}");
        }
        else if (schema["type"] is { } type && !HasType(value, (string)type!))
        {
            errors.Add($"{Where(path)}: must be {type}, not {Describe(value)}");
            return;
        }

        if (schema["enum"] is JsonArray allowed && !allowed.Any(a => JsonNode.DeepEquals(a, value)))
            errors.Add($"{Where(path)}: {value.ToJsonString()} is not one of {allowed.ToJsonString()}");
        if (kind == JsonValueKind.String)
        {
            var text = value.GetValue<string>();
            if (schema["pattern"] is { } pattern && !Regex.IsMatch(text, (string)pattern!)) errors.Add($"{Where(path)}: '{text}' does not match {pattern}");
            if (schema["maxLength"] is { } max && text.Length > (int)max) errors.Add($"{Where(path)}: longer than {max}");
            if (schema["minLength"] is { } min && text.Length < (int)min) errors.Add($"{Where(path)}: shorter than {min}");
        }
        if (kind == JsonValueKind.Number)
        {
            var number = value.GetValue<double>();
            if (schema["minimum"] is { } min && number < (double)min) errors.Add($"{Where(path)}: below the minimum {min}");
            if (schema["maximum"] is { } max && number > (double)max) errors.Add($"{Where(path)}: above the maximum {max}");
        }
        if (value is JsonObject obj) CheckObject(obj, schema, path, errors);
        if (value is JsonArray array)
        {
            if (schema["minItems"] is { } min && array.Count < (int)min) errors.Add($"{Where(path)}: fewer than {min} items");
            if (schema["items"] is { } items)
            {
                for (var i = 0; i < array.Count; i++) Check(array[i], items, $"{path}[{i}]", errors);
            }
        }
        if (schema["allOf"] is JsonArray all)
        {
            foreach (var branch in all) Check(value, branch!, path, errors);
        }
        if (schema["anyOf"] is JsonArray any && !any.Any(b => Passes(value, b!, path)))
            errors.Add($"{Where(path)}: matches none of anyOf {Compact(any)}");
        if (schema["oneOf"] is JsonArray one && one.Count(b => Passes(value, b!, path)) != 1)
            errors.Add($"{Where(path)}: must match exactly one of oneOf {Compact(one)}");
    }

    private void CheckObject(JsonObject obj, JsonNode schema, string path, List<string> errors)
    {
        foreach (var required in schema["required"]?.AsArray() ?? [])
        {
            if (!obj.ContainsKey((string)required!)) errors.Add($"{Where(path + "." + required)}: required");
        }
        var properties = schema["properties"]?.AsObject();
        var additional = schema["additionalProperties"];
        var open = schema["x-kubernetes-preserve-unknown-fields"]?.GetValue<bool>() == true;
        foreach (var (name, child) in obj)
        {
            var childPath = path + "." + name;
            if (properties?[name] is { } property) Check(child, property, childPath, errors);
            else if (additional is JsonObject additionalSchema) Check(child, additionalSchema, childPath, errors);
            else if (additional?.GetValueKind() == JsonValueKind.True || open) continue;
            // An object schema that lists no properties (RawExtension, FieldsV1) takes anything; one that does is closed.
            else if (properties is not null || additional?.GetValueKind() == JsonValueKind.False) errors.Add($"{Where(childPath)}: unknown field");
        }
    }

    private bool Passes(JsonNode value, JsonNode schema, string path)
    {
        var errors = new List<string>();
        Check(value, schema, path, errors);
        return errors.Count == 0;
    }

    private static bool HasType(JsonNode value, string type) => type switch
    {
        "object" => value is JsonObject,
        "array" => value is JsonArray,
        "string" => value.GetValueKind() == JsonValueKind.String,
        "integer" => IsInteger(value),
        "number" => value.GetValueKind() == JsonValueKind.Number,
        "boolean" => value.GetValueKind() is JsonValueKind.True or JsonValueKind.False,
        _ => true,
    };

    private static bool IsInteger(JsonNode value) => value.GetValueKind() == JsonValueKind.Number && value.GetValue<double>() is var d && Math.Floor(d) == d;

    private static string Describe(JsonNode value) => value.GetValueKind() switch
    {
        JsonValueKind.String => $"the string {value.ToJsonString()}",
        JsonValueKind.Number => $"the number {value.ToJsonString()}",
        JsonValueKind.True or JsonValueKind.False => $"the boolean {value.ToJsonString()}",
        JsonValueKind.Array => "an array",
        _ => "an object",
    };

    private static string Compact(JsonArray branches) => branches.ToJsonString() is var s && s.Length > 120 ? s[..120] + "..." : s;

    private static string Where(string path) => path.Length == 0 ? "(document)" : path.TrimStart('.');

    private static JsonNode? ToJson(YamlNode node) => node switch
    {
        YamlMappingNode map => new JsonObject(map.Children.Select(kv => KeyValuePair.Create(((YamlScalarNode)kv.Key).Value ?? "", ToJson(kv.Value)))),
        YamlSequenceNode list => new JsonArray([.. list.Children.Select(ToJson)]),
        YamlScalarNode scalar => Scalar(scalar),
        _ => throw new YamlException($"unsupported YAML node {node.NodeType} at {node.Start}"),
    };

    // Plain scalars resolve as go-yaml (YAML 1.1) resolves them, so "on" is a boolean and 8082 a number, as kubectl sees them.
    private static JsonNode? Scalar(YamlScalarNode scalar)
    {
        var text = scalar.Value ?? "";
        if (scalar.Style is not ScalarStyle.Plain || scalar.Tag == "tag:yaml.org,2002:str") return JsonValue.Create(text);
        if (text is "" or "~" or "null" or "Null" or "NULL") return null;
        if (Yaml11True().IsMatch(text)) return JsonValue.Create(true);
        if (Yaml11False().IsMatch(text)) return JsonValue.Create(false);
        // As JSON text, so that the values read back as any numeric type (as the schema files' numbers do).
        if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer)) return JsonNode.Parse(integer.ToString(CultureInfo.InvariantCulture));
        if (Yaml11Float().IsMatch(text) && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number)) return JsonNode.Parse(number.ToString("R", CultureInfo.InvariantCulture));
        return JsonValue.Create(text);
    }

    [GeneratedRegex("^(y|Y|yes|Yes|YES|true|True|TRUE|on|On|ON)$")]
    private static partial Regex Yaml11True();

    [GeneratedRegex("^(n|N|no|No|NO|false|False|FALSE|off|Off|OFF)$")]
    private static partial Regex Yaml11False();

    [GeneratedRegex(@"^[-+]?([0-9][0-9_]*)?\.[0-9.]*([eE][-+][0-9]+)?$")]
    private static partial Regex Yaml11Float();
}
