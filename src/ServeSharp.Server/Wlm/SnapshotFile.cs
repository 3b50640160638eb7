using System.Globalization;
using System.Text;
using System.Text.Json;

namespace ServeSharp.Server.Wlm;

/// <summary>One model version as a snapshot records it (TorchServe's Model.getModelState).</summary>
internal sealed record SnapshotEntry(string Name, string Version, string MarName, bool IsDefault, WorkerSettings Settings, string Runtime);

/// <summary>One model version as a snapshot restores it; what the snapshot leaves out is null (the usual defaults apply).</summary>
internal sealed record RestoredModel(string Name, string Version, string MarName, bool DefaultVersion, int? MinWorkers, int? MaxWorkers,
    int? BatchSize, int? MaxBatchDelay, int? ResponseTimeout, int? StartupTimeout, string? RuntimeType);

/// <summary>
/// TorchServe's snapshot file, as its FSSnapshotSerializer writes it: a Java properties file (Properties.store: a
/// "#Saving snapshot" line, the date, then key=value with Java's escapes) holding the configuration the server runs
/// with and <c>model_snapshot</c>, Gson's pretty-printed JSON of every model version. TorchServe starts from such a
/// file (as its config) and restores the models; so does ServeSharp, from TorchServe's files and from its own.
/// </summary>
internal static class SnapshotFile
{
    public const string ModelSnapshotKey = "model_snapshot";

    public static string Write(string name, DateTimeOffset now, IReadOnlyList<SnapshotEntry> entries, IEnumerable<KeyValuePair<string, string>> properties)
    {
        var text = new StringBuilder();
        text.Append("#Saving snapshot\n");
        text.Append('#').Append(now.UtcDateTime.ToString("ddd MMM dd HH:mm:ss 'UTC' yyyy", CultureInfo.InvariantCulture)).Append('\n');
        foreach (var (key, value) in properties.Where(p => p.Key != ModelSnapshotKey).OrderBy(p => p.Key, StringComparer.Ordinal))
            text.Append(Escape(key, isKey: true)).Append('=').Append(Escape(value, isKey: false)).Append('\n');
        text.Append(ModelSnapshotKey).Append('=').Append(Escape(ModelsJson(name, now, entries), isKey: false)).Append('\n');
        return text.ToString();
    }

    /// <summary>The models of a <c>model_snapshot</c> value (TorchServe's Snapshot JSON). Throws JsonException when it is not that.</summary>
    public static IReadOnlyList<RestoredModel> ReadModels(string modelSnapshotJson)
    {
        using var doc = JsonDocument.Parse(modelSnapshotJson);
        var result = new List<RestoredModel>();
        if (!doc.RootElement.TryGetProperty("models", out var models) || models.ValueKind != JsonValueKind.Object) return result;
        foreach (var model in models.EnumerateObject())
        {
            foreach (var version in model.Value.EnumerateObject())
            {
                var v = version.Value;
                var marName = Str(v, "marName") ?? throw new JsonException($"model {model.Name} version {version.Name} has no marName");
                result.Add(new RestoredModel(model.Name, version.Name, marName, Bool(v, "defaultVersion") ?? false,
                    Int(v, "minWorkers"), Int(v, "maxWorkers"), Int(v, "batchSize"), Int(v, "maxBatchDelay"),
                    Int(v, "responseTimeout"), Int(v, "startupTimeout"), Str(v, "runtimeType")));
            }
        }
        return result;
    }

    // Gson's pretty printing: two-space indents, "key": value; the fields in Model.getModelState's order.
    private static string ModelsJson(string name, DateTimeOffset now, IReadOnlyList<SnapshotEntry> entries)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("name", name);
            json.WriteNumber("modelCount", entries.Count);
            json.WriteNumber("created", now.ToUnixTimeMilliseconds());
            json.WriteStartObject("models");
            foreach (var model in entries.GroupBy(e => e.Name).OrderBy(g => g.Key, StringComparer.Ordinal))
            {
                json.WriteStartObject(model.Key);
                foreach (var e in model.OrderBy(e => e.Version, StringComparer.Ordinal))
                {
                    json.WriteStartObject(e.Version);
                    json.WriteBoolean("defaultVersion", e.IsDefault);
                    json.WriteString("marName", e.MarName);
                    json.WriteNumber("minWorkers", e.Settings.MinWorkers);
                    json.WriteNumber("maxWorkers", e.Settings.MaxWorkers);
                    json.WriteNumber("batchSize", e.Settings.BatchSize);
                    json.WriteNumber("maxBatchDelay", e.Settings.MaxBatchDelayMs);
                    json.WriteNumber("responseTimeout", e.Settings.ResponseTimeoutSeconds);
                    json.WriteNumber("startupTimeout", e.Settings.StartupTimeoutSeconds);
                    json.WriteString("runtimeType", e.Runtime);
                    json.WriteEndObject();
                }
                json.WriteEndObject();
            }
            json.WriteEndObject();
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray()).Replace("\r\n", "\n", StringComparison.Ordinal);
    }

    // java.util.Properties.store's escapes. Characters outside printable ASCII are written \uXXXX, as store(OutputStream)
    // does: TorchServe loads its snapshots from a stream, as ISO-8859-1, so raw UTF-8 would not read back.
    private static string Escape(string text, bool isKey)
    {
        var result = new StringBuilder(text.Length + 16);
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            switch (c)
            {
                case ' ' when isKey || i == 0: result.Append("\\ "); break;
                case '\\': result.Append("\\\\"); break;
                case '\t': result.Append("\\t"); break;
                case '\n': result.Append("\\n"); break;
                case '\r': result.Append("\\r"); break;
                case '\f': result.Append("\\f"); break;
                case '=' or ':' or '#' or '!': result.Append('\\').Append(c); break;
                case < ' ' or > '~': result.Append("\\u").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture)); break;
                default: result.Append(c); break;
            }
        }
        return result.ToString();
    }

    private static string? Str(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static int? Int(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;

    private static bool? Bool(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
}
