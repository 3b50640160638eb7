using System.Text.Json;
using System.Text.Json.Serialization;

namespace ServeSharp.Archive;

/// <summary>
/// <c>MAR-INF/quantization.json</c>: what the archiver wrote for <c>precision: int8</c> or <c>fp16</c> — the reduced-precision
/// model beside the fp32 one, how it was calibrated (int8), and how far its class maps agree with the fp32 model's (the
/// parity gate). The fp32 model stays the manifest's serializedFile, so <c>precision: fp32</c> (or no key) serves it again.
/// </summary>
public sealed record QuantizationReport
{
    public const string Fp32Precision = "fp32";
    public const string Int8Precision = "int8";
    public const string Fp16Precision = "fp16";
    public const string Fp16Format = "fp16: float16 initializers and activations; graph inputs and outputs float with Casts at the boundaries; Resize and shape arithmetic kept fp32";
    public const string FileName = "quantization.json";
    public const string RelativePath = "MAR-INF/" + FileName;

    /// <summary>The least pixel agreement with fp32 the archiver accepts without --force-int8.</summary>
    public const double DefaultGate = 0.995;

    [JsonPropertyName("precision")] public string Precision { get; init; } = Int8Precision;
    [JsonPropertyName("quantizedFile")] public required string QuantizedFile { get; init; }
    [JsonPropertyName("sourceFile")] public required string SourceFile { get; init; }
    [JsonPropertyName("sourceSha256")] public required string SourceSha256 { get; init; }
    [JsonPropertyName("quantizedSha256")] public required string QuantizedSha256 { get; init; }
    [JsonPropertyName("format")] public string Format { get; init; } = "QDQ: activations uint8 asymmetric per tensor, Conv weights int8 symmetric per output channel, bias int32";
    /// <summary>How int8's activation ranges were measured; null for fp16, which needs no calibration.</summary>
    [JsonPropertyName("calibration"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public CalibrationInfo? Calibration { get; init; }

    /// <summary>Argmax pixel agreement (int8 or fp16) vs fp32 over the parity images.</summary>
    [JsonPropertyName("agreement")] public required double Agreement { get; init; }
    [JsonPropertyName("gate")] public required double Gate { get; init; }
    [JsonPropertyName("passed")] public required bool Passed { get; init; }

    /// <summary>True when the archive was written below the gate (--force-int8; fp16 has no forcing).</summary>
    [JsonPropertyName("forced")] public bool Forced { get; init; }
    [JsonPropertyName("parityImages")] public required IReadOnlyList<ImageFigure> ParityImages { get; init; }
    /// <summary>Convs quantized (int8) or converted to float16 (fp16).</summary>
    [JsonPropertyName("quantizedConvs")] public required int QuantizedConvs { get; init; }

    /// <summary>
    /// Where the agreement was measured: for fp16, ONNX Runtime's CPU provider, which runs float16 nodes it has no kernel
    /// for through Casts to fp32; GPU fp16 arithmetic may differ.
    /// </summary>
    [JsonPropertyName("measuredOn"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? MeasuredOn { get; init; }

    /// <summary>The CPU the archive was made (and its agreement measured) on: int8 pays off with VNNI.</summary>
    [JsonPropertyName("cpu")] public required IReadOnlyDictionary<string, bool> Cpu { get; init; }
    [JsonPropertyName("createdOn")] public required string CreatedOn { get; init; }

    /// <summary>Reads the report in <paramref name="modelDirectory"/>; null when there is none.</summary>
    public static QuantizationReport? Read(string modelDirectory)
    {
        var path = Path.Combine(modelDirectory, RelativePath);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllBytes(path), QuantizationJsonContext.Default.QuantizationReport);
        }
        catch (JsonException e)
        {
            throw new ArchiveException($"{RelativePath} is not valid ({e.Message})", e);
        }
    }

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, QuantizationJsonContext.Default.QuantizationReport);
}

/// <summary>How the activations' ranges were measured.</summary>
public sealed record CalibrationInfo
{
    [JsonPropertyName("method")] public string Method { get; init; } = "minmax";
    [JsonPropertyName("images")] public required IReadOnlyList<string> Images { get; init; }
    [JsonPropertyName("sha256")] public required string Sha256 { get; init; }
    [JsonPropertyName("preprocessing")] public required string Preprocessing { get; init; }
}

/// <summary>One parity image's agreement.</summary>
public sealed record ImageFigure
{
    [JsonPropertyName("image")] public required string Image { get; init; }
    [JsonPropertyName("pixels")] public required long Pixels { get; init; }
    [JsonPropertyName("agreement")] public required double Agreement { get; init; }
}

[JsonSourceGenerationOptions(WriteIndented = true)]
[JsonSerializable(typeof(QuantizationReport))]
internal sealed partial class QuantizationJsonContext : JsonSerializerContext;
