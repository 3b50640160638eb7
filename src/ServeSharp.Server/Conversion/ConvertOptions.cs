namespace ServeSharp.Server.Conversion;

/// <summary>What <c>servesharp convert</c> was asked to do (its command line, or a registration's on-the-fly conversion).</summary>
internal sealed record ConvertOptions
{
    /// <summary>The TorchServe archive: a .mar, a .tar.gz or a no-archive folder.</summary>
    public required string Source { get; init; }

    /// <summary>The folder the converted <c>NAME.mar</c> is written to (created when missing).</summary>
    public required string ExportPath { get; init; }

    /// <summary>The converted archive's model name and file name; the source manifest's modelName when null.</summary>
    public string? ModelName { get; init; }

    public int Opset { get; init; } = DefaultOpset;

    /// <summary>The size of the export's example and of the generated parity samples; what the handler feeds the model when null.</summary>
    public (int Height, int Width)? InputSize { get; init; }

    /// <summary>Dynamic batch and spatial axes; false fixes height and width at the input size (the batch stays dynamic).</summary>
    public bool Dynamic { get; init; } = true;

    /// <summary>Store the weights as float16 (inputs and outputs stay float).</summary>
    public bool Fp16 { get; init; }

    /// <summary>A folder of images to measure parity on, instead of generated samples.</summary>
    public string? Samples { get; init; }

    /// <summary>Overwrite an existing target, and write the archive even when parity is below the gate.</summary>
    public bool Force { get; init; }

    /// <summary>The Python to run the torch side with; the first on PATH that can import torch when null.</summary>
    public string? Python { get; init; }

    /// <summary>Generated parity samples at the input size (one more at another size checks the dynamic axes).</summary>
    public int SampleCount { get; init; } = 4;

    /// <summary>The newest opset every torch from 1.13 on exports; ONNX Runtime 1.31 runs it.</summary>
    public const int DefaultOpset = 17;

    /// <summary>TorchServe's image_segmenter feeds the model its CenterCrop(224).</summary>
    public static readonly (int Height, int Width) DefaultInputSize = (224, 224);

    /// <summary>Pixel agreement below which the archive is not written (without <see cref="Force"/>).</summary>
    public const double AgreementGate = 0.995;
}
