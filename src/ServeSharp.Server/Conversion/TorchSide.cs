using System.Text.Json;
using System.Text.Json.Serialization;

namespace ServeSharp.Server.Conversion;

/// <summary>What convert asks the torch side to do (torch_convert.py reads it as REQUEST.json).</summary>
internal sealed record TorchRequest
{
    public required string ModelDir { get; init; }
    public string? SerializedFile { get; init; }
    public string? ModelFile { get; init; }
    public required TorchHandler Handler { get; init; }
    public required string Onnx { get; init; }
    public required int Opset { get; init; }
    public required int[] InputSize { get; init; }
    public bool Dynamic { get; init; }
    public bool Fp16 { get; init; }
    public string? Samples { get; init; }
    public int SampleCount { get; init; }
    public int MaxSamples { get; init; } = 16;
    public required string Work { get; init; }
    public int Seed { get; init; }
}

/// <summary>The handler the archive names: a built-in's name, or a Python file to describe. <c>Output</c>: the dict entry it reads.</summary>
internal sealed record TorchHandler(string? Builtin, string? File, string Output = "out");

/// <summary>The torch side's answer (RESULT.json): versions, the model as loaded, the parity samples, the export, the handler.</summary>
internal sealed record TorchResult
{
    public string? Error { get; init; }
    public string? Python { get; init; }
    public string? Executable { get; init; }
    public string? Torch { get; init; }
    public string? Torchvision { get; init; }
    public string? OnnxPackage { get; init; }
    public TorchModel? Model { get; init; }
    public IReadOnlyList<ParitySample> Samples { get; init; } = [];
    public TorchExport? Export { get; init; }
    public HandlerAnalysis? Handler { get; init; }
}

internal sealed record TorchModel
{
    /// <summary>"eager" or "torchscript".</summary>
    public string Kind { get; init; } = "";
    public string? File { get; init; }
    public string? Class { get; init; }
    public string? ModelFile { get; init; }
    public TorchOutput? Output { get; init; }
}

/// <summary>What the model answers: "dict" (with its keys), "tuple" or "tensor"; and the entry exported.</summary>
internal sealed record TorchOutput
{
    public string Type { get; init; } = "";
    public IReadOnlyList<string>? Keys { get; init; }
    public string? Exported { get; init; }
    public int? Length { get; init; }
}

internal sealed record TorchExport
{
    public int Opset { get; init; }
    public bool Dynamic { get; init; }
    public int OutputRank { get; init; }
    public int? Fp16Tensors { get; init; }
}

/// <summary>A Python handler as its source reads (parsed by the torch side, never imported).</summary>
internal sealed record HandlerAnalysis
{
    public string File { get; init; } = "";
    public string? Entry { get; init; }
    public IReadOnlyList<string> Imports { get; init; } = [];
    public IReadOnlyList<PythonClass> Classes { get; init; } = [];
    public IReadOnlyList<PythonFunction> Functions { get; init; } = [];
}

internal sealed record PythonClass
{
    public string Name { get; init; } = "";
    public int Line { get; init; }
    public IReadOnlyList<string> Bases { get; init; } = [];
    public IReadOnlyList<PythonFunction> Methods { get; init; } = [];
}

internal sealed record PythonFunction
{
    public string Name { get; init; } = "";
    public int Line { get; init; }
    public string Source { get; init; } = "";
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(TorchRequest))]
[JsonSerializable(typeof(TorchResult))]
internal sealed partial class TorchSideJson : JsonSerializerContext;

/// <summary>Runs torch_convert.py's conversion and reads what it answers.</summary>
internal static class TorchSide
{
    public static async Task<TorchResult> ConvertAsync(PythonInfo python, string script, TorchRequest request, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var requestPath = Path.Combine(request.Work, "request.json");
        var resultPath = Path.Combine(request.Work, "result.json");
        await File.WriteAllBytesAsync(requestPath, JsonSerializer.SerializeToUtf8Bytes(request, TorchSideJson.Default.TorchRequest), cancellationToken);
        var run = await TorchPython.RunAsync(python.Executable, [script, "convert", requestPath, resultPath], request.Work, timeout, cancellationToken);

        TorchResult? result = null;
        if (File.Exists(resultPath))
        {
            try
            {
                result = JsonSerializer.Deserialize(await File.ReadAllBytesAsync(resultPath, cancellationToken), TorchSideJson.Default.TorchResult);
            }
            catch (JsonException)
            {
                result = null;
            }
        }
        if (run.ExitCode == TorchPython.Refused && result?.Error is { } error) throw new ConversionException(error);
        if (run.ExitCode != 0 || result is null || result.Model is null || result.Export is null || result.Samples.Count == 0)
        {
            var tail = string.Join('\n', run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).TakeLast(12));
            throw new ConversionException($"the torch side failed in {python.Executable} (exit code {run.ExitCode}):\n{tail}");
        }
        return result;
    }
}
