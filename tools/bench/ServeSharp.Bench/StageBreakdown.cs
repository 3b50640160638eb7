using System.Globalization;
using System.Text;

namespace ServeSharp.Bench;

/// <summary>One stage's histogram totals: seconds summed and observations counted.</summary>
public readonly record struct StageTotal(double SumSeconds, double Count);

/// <summary>One stage's share of the measured part: mean ms per request and its share of the measured mean latency.</summary>
public sealed record StageRow(string Stage, double MeanMs, double Share, double Count);

/// <summary>
/// A scenario's per-request time, stage by stage, against the latency the clients measured and (when the server reports
/// it) the server's own wall time per request.
/// </summary>
public sealed record Breakdown(IReadOnlyList<StageRow> Stages, double SumMs, double MeasuredMeanMs, double? ServerWallMs = null)
{
    /// <summary>Time the stages do not account for (client, loopback, Kestrel before read_body); negative when they overlap.</summary>
    public double UnaccountedMs => MeasuredMeanMs - SumMs;
}

/// <summary>
/// ServeSharp's <c>servesharp_request_stage_seconds</c> histogram (labels model_name, stage) read from the metrics API's
/// Prometheus text before and after a scenario's measured part: per stage, Δsum / Δcount is the mean time a request
/// spent there. Other label sets (versions) of the same model and stage are added up.
/// </summary>
public static class StageBreakdown
{
    public const string Metric = "servesharp_request_stage_seconds";

    /// <summary>The server's wall time per request, read_body to write (labels model_name): the key <see cref="Wall"/> in <see cref="Parse"/>'s answer.</summary>
    public const string WallMetric = "servesharp_request_seconds";

    /// <summary>The key under which <see cref="Parse"/> returns <see cref="WallMetric"/>'s totals.</summary>
    public const string Wall = "(server wall time)";

    /// <summary>The stages in the order a request meets them; stages the server reports beyond these follow.</summary>
    public static readonly string[] Stages = ["read_body", "decode", "preprocess", "queue_wait", "batch_formation", "inference", "postprocess", "serialize", "write"];

    /// <summary>Stage → totals for <paramref name="model"/>; null when the text has no such metric (a server without it).</summary>
    public static Dictionary<string, StageTotal>? Parse(string prometheusText, string model)
    {
        Dictionary<string, StageTotal>? stages = null, wall = null;
        foreach (var raw in prometheusText.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            bool isSum = line.StartsWith(Metric + "_sum", StringComparison.Ordinal), isCount = line.StartsWith(Metric + "_count", StringComparison.Ordinal);
            bool isWallSum = line.StartsWith(WallMetric + "_sum", StringComparison.Ordinal), isWallCount = line.StartsWith(WallMetric + "_count", StringComparison.Ordinal);
            if (!isSum && !isCount && !isWallSum && !isWallCount) continue;
            if (isSum || isCount) stages ??= [];
            var open = line.IndexOf('{', StringComparison.Ordinal);
            var close = line.LastIndexOf('}');
            if (open < 0 || close < open) continue;
            var labels = Labels(line[(open + 1)..close]);
            if (labels.GetValueOrDefault("model_name") != model) continue;
            var stage = isWallSum || isWallCount ? Wall : labels.GetValueOrDefault("stage");
            if (stage is null) continue;
            var valueText = line[(close + 1)..].Trim().Split(' ')[0];
            var value = double.Parse(valueText, NumberStyles.Float, CultureInfo.InvariantCulture);
            var into = stage == Wall ? (wall ??= []) : stages!;
            var total = into.GetValueOrDefault(stage);
            into[stage] = isSum || isWallSum ? total with { SumSeconds = total.SumSeconds + value } : total with { Count = total.Count + value };
        }
        // The wall time rides along with the stages; without the stage metric there is no breakdown at all.
        if (stages is not null && wall is not null && wall.TryGetValue(Wall, out var w)) stages[Wall] = w;
        return stages;
    }

    /// <summary>
    /// The measured part's breakdown: per stage Δsum / Δcount in ms, its share of <paramref name="measuredMeanMs"/>
    /// (the clients' mean latency), and the stages' sum.
    /// </summary>
    public static Breakdown Compute(IReadOnlyDictionary<string, StageTotal> before, IReadOnlyDictionary<string, StageTotal> after, double measuredMeanMs)
    {
        var rows = new List<StageRow>();
        foreach (var stage in Stages.Concat(after.Keys.Where(k => !Stages.Contains(k) && k != Wall).Order(StringComparer.Ordinal)))
        {
            if (!after.TryGetValue(stage, out var a)) continue;
            var b = before.GetValueOrDefault(stage);
            var count = a.Count - b.Count;
            if (count <= 0) continue;
            var meanMs = (a.SumSeconds - b.SumSeconds) / count * 1000;
            rows.Add(new StageRow(stage, meanMs, measuredMeanMs > 0 ? meanMs / measuredMeanMs : 0, count));
        }
        double? wallMs = after.TryGetValue(Wall, out var wa) && wa.Count - before.GetValueOrDefault(Wall).Count is > 0 and var n
            ? (wa.SumSeconds - before.GetValueOrDefault(Wall).SumSeconds) / n * 1000 : null;
        return new Breakdown(rows, rows.Sum(r => r.MeanMs), measuredMeanMs, wallMs);
    }

    /// <summary>A markdown table: stage, mean ms per request, share of the measured mean latency, observations.</summary>
    public static string Table(string title, Breakdown b)
    {
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"{title}:");
        md.AppendLine();
        md.AppendLine("| stage | mean ms per request | share of measured mean latency | observations |");
        md.AppendLine("|---|---|---|---|");
        foreach (var r in b.Stages) md.AppendLine(CultureInfo.InvariantCulture, $"| {r.Stage} | {r.MeanMs:F2} | {r.Share:P1} | {r.Count:F0} |");
        md.AppendLine(CultureInfo.InvariantCulture, $"| **sum of stages** | {b.SumMs:F2} | {(b.MeasuredMeanMs > 0 ? b.SumMs / b.MeasuredMeanMs : 0):P1} | |");
        if (b.ServerWallMs is { } wall)
            md.AppendLine(CultureInfo.InvariantCulture, $"| server wall time ({WallMetric}) | {wall:F2} | {(b.MeasuredMeanMs > 0 ? wall / b.MeasuredMeanMs : 0):P1} | |");
        md.AppendLine(CultureInfo.InvariantCulture, $"| measured mean latency (clients) | {b.MeasuredMeanMs:F2} | 100.0 % | |");
        md.AppendLine(CultureInfo.InvariantCulture, $"| not in any stage | {b.UnaccountedMs:F2} | {(b.MeasuredMeanMs > 0 ? b.UnaccountedMs / b.MeasuredMeanMs : 0):P1} | |");
        return md.ToString();
    }

    // name="value",name2="value2" with Prometheus' escapes (\\, \", \n) inside values.
    private static Dictionary<string, string> Labels(string text)
    {
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        var i = 0;
        while (i < text.Length)
        {
            var eq = text.IndexOf('=', i);
            if (eq < 0 || eq + 1 >= text.Length || text[eq + 1] != '"') break;
            var name = text[i..eq].Trim().TrimStart(',').Trim();
            var value = new StringBuilder();
            var j = eq + 2;
            for (; j < text.Length && text[j] != '"'; j++)
            {
                if (text[j] == '\\' && j + 1 < text.Length)
                {
                    j++;
                    value.Append(text[j] == 'n' ? '\n' : text[j]);
                }
                else
                {
                    value.Append(text[j]);
                }
            }
            labels[name] = value.ToString();
            i = j + 1;
        }
        return labels;
    }
}
