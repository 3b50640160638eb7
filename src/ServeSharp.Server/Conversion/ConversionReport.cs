using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ServeSharp.Server.Conversion;

/// <summary>
/// What a conversion did and measured: printed by <c>servesharp convert</c> and stored in the converted archive as
/// <c>MAR-INF/conversion.json</c>, so an archive says where it came from and how close it is to the original.
/// </summary>
internal sealed record ConversionReport
{
    public required string Converter { get; init; }
    public required string CreatedOn { get; init; }
    public required ReportSource Source { get; init; }
    public required ReportTorch Torch { get; init; }
    public required ReportOnnx Onnx { get; init; }
    public required ReportParity Parity { get; init; }
    public required ReportHandler Handler { get; init; }

    /// <summary>Files of the source archive the converted one leaves out, each with the reason.</summary>
    public IReadOnlyList<string> Dropped { get; init; } = [];

    public const string FileName = "conversion.json";

    // Relaxed escaping: the report is read by people ("the model's 'out'", "|Δprob|"), and it is never embedded in HTML.
    private static readonly ConversionReportJson Json = new(new JsonSerializerOptions
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, Json.ConversionReport);

    public static ConversionReport? FromJson(ReadOnlySpan<byte> json) => JsonSerializer.Deserialize(json, Json.ConversionReport);

    /// <summary>The report as the command prints it.</summary>
    public string Summary(string target, bool written)
    {
        var s = new StringBuilder();
        var model = Source.Kind == "eager"
            ? $"eager: {Source.ModelFile} ({Source.ModelClass}) with the state dict {Source.SerializedFile}"
            : $"TorchScript: {Source.SerializedFile}";
        s.AppendLine(CultureInfo.InvariantCulture, $"  source    {Source.File} (model {Source.ModelName} {Source.ModelVersion}; {model}; sha256 {Source.Sha256[..16]}...)");
        s.AppendLine(CultureInfo.InvariantCulture, $"  torch     {Torch.Torch} in {Torch.Python} (Python {Torch.PythonVersion})");
        var axes = Onnx.DynamicAxes ? "dynamic batch and spatial axes" : $"fixed {Onnx.InputSize}, dynamic batch";
        var weights = Onnx.Fp16 ? "; float16 weights" : "";
        s.AppendLine(CultureInfo.InvariantCulture, $"  onnx      {Onnx.File}, opset {Onnx.Opset}: \"{Onnx.Input}\" float N×3×H×W → \"{Onnx.Output}\" ({Onnx.ExportedFrom}); {axes}{weights}");
        s.AppendLine(CultureInfo.InvariantCulture, $"  parity    {Parity.Inputs}: {Parity.Verdict}");
        foreach (var sample in Parity.Samples)
            s.AppendLine(CultureInfo.InvariantCulture, $"              {sample.Name}: agreement {sample.Agreement:P3}, max |Δprob| {Figure(sample.MaxAbsProbDelta)}");
        s.AppendLine(CultureInfo.InvariantCulture, $"  handler   {Handler.From} → {Handler.To}: {Handler.Note}");
        foreach (var dropped in Dropped) s.AppendLine(CultureInfo.InvariantCulture, $"  dropped   {dropped}");
        s.Append(written ? $"  wrote     {target} (this report is in it as MAR-INF/{FileName})" : $"  not written: {target}");
        return s.ToString();
    }

    public static string Figure(double value) => double.IsNaN(value) ? "n/a (class maps)" : value.ToString("0.0E+0", CultureInfo.InvariantCulture);
}

internal sealed record ReportSource(string File, string Sha256, string ModelName, string ModelVersion, string Kind,
    string? SerializedFile, string? ModelFile, string? ModelClass, string Handler);

internal sealed record ReportTorch(string Python, string PythonVersion, string Torch, string? Torchvision);

internal sealed record ReportOnnx(string File, int Opset, string Input, string Output, string ExportedFrom, bool DynamicAxes, string InputSize, bool Fp16);

internal sealed record ReportParity
{
    /// <summary>The overall figures and the verdict from each input's.</summary>
    public static ReportParity From(IReadOnlyList<SampleParity> samples, ConvertOptions options)
    {
        var positions = samples.Sum(s => s.Positions);
        var agreeing = samples.Sum(s => s.Agreeing);
        var agreement = positions == 0 ? 0 : (double)agreeing / positions;
        var deltas = samples.Select(s => s.MaxAbsProbDelta).Where(d => !double.IsNaN(d)).ToList();
        var passed = agreement >= ConvertOptions.AgreementGate && samples.All(s => s.Agreement >= ConvertOptions.AgreementGate);
        var sizes = string.Join(", ", samples.GroupBy(s => string.Join('x', s.Shape.Split('x').Skip(2))).Select(g => $"{g.Count()} at {g.Key}"));
        var inputs = options.Samples is { } dir
            ? $"{samples.Count} inputs ({sizes}): the images of {dir} through image_segmenter's steps" + (options.Dynamic ? ", and one generated at another size for the dynamic axes" : "")
            : $"{samples.Count} generated images ({sizes})" + (options.Dynamic ? ", the last at another size for the dynamic axes" : "");
        return new ReportParity
        {
            Inputs = inputs,
            PixelAgreement = agreement,
            MaxAbsProbDelta = deltas.Count == 0 ? double.NaN : deltas.Max(),
            Pixels = positions,
            Passed = passed,
            Forced = !passed && options.Force,
            Samples = samples,
        };
    }

    /// <summary>What the figures were measured on: "--samples DIR (n images)" or "n generated images".</summary>
    public required string Inputs { get; init; }

    /// <summary>The fraction of positions (pixels) where the ONNX model's argmax class equals torch's.</summary>
    public required double PixelAgreement { get; init; }

    /// <summary>The largest difference of a softmax probability between the two, over every pixel and class.</summary>
    public required double MaxAbsProbDelta { get; init; }

    public required long Pixels { get; init; }
    public double Gate { get; init; } = ConvertOptions.AgreementGate;
    public required bool Passed { get; init; }

    /// <summary>Written although it did not pass (--force).</summary>
    public bool Forced { get; init; }

    public IReadOnlyList<SampleParity> Samples { get; init; } = [];

    [JsonIgnore]
    public string Verdict
    {
        get
        {
            var gate = Gate.ToString("P1", CultureInfo.InvariantCulture);
            var outcome = Passed ? $"passed (gate {gate})" : Forced ? $"BELOW the {gate} gate, written anyway (--force)" : $"BELOW the {gate} gate";
            return string.Create(CultureInfo.InvariantCulture,
                $"pixel agreement {PixelAgreement:P3} over {Pixels} pixels, max |Δprob| {ConversionReport.Figure(MaxAbsProbDelta)}: {outcome}");
        }
    }
}

/// <summary>The source's handler and what the converted archive names instead (the same built-in, or a C# skeleton).</summary>
internal sealed record ReportHandler(string From, string To, string Note);

[JsonSerializable(typeof(ConversionReport))]
internal sealed partial class ConversionReportJson : JsonSerializerContext;
