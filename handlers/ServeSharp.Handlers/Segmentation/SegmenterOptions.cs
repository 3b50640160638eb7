using System.Globalization;
using ServeSharp.Contracts;
using ServeSharp.Sdk;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// image_segmenter's settings: model-config.yaml's <c>handler:</c> section, with per-request overrides from
/// query/form parameters for the choices a client may make (output, mode, scales, flip, alpha, rle, slide).
/// </summary>
internal sealed record SegmenterOptions
{
    /// <summary>torchserve (Resize 256 → CenterCrop 224), torchvision (shorter side to resize_size), fixed (size W×H), original (no resize).</summary>
    public string Mode { get; init; } = "torchserve";
    public int ResizeSize { get; init; } = 520;
    public int TorchServeResize { get; init; } = 256;
    public int TorchServeCrop { get; init; } = 224;
    public (int Width, int Height)? FixedSize { get; init; }
    public float[] Mean { get; init; } = [0.485f, 0.456f, 0.406f];
    public float[] Std { get; init; } = [0.229f, 0.224f, 0.225f];
    public double[] Scales { get; init; } = [1.0];
    public bool Flip { get; init; }
    public (int Height, int Width)? SlideCrop { get; init; }
    public (int Height, int Width)? SlideStride { get; init; }
    public string Output { get; init; } = "torchserve";
    public double Alpha { get; init; } = 0.5;
    public bool Rle { get; init; }
    public long MaxPixels { get; init; } = 40_000_000;
    public int MaxRegions { get; init; } = 100;

    /// <summary>
    /// <c>jpeg_draft</c> (PIL's name for it): a JPEG much larger than the model's input is decoded at 1/2, 1/4 or 1/8
    /// scale by libjpeg's DCT scaling, keeping at least four times the resize's target in each direction, so the resize
    /// still averages over several decoded pixels per output pixel. Off by default: TorchServe's PIL decodes every pixel,
    /// and drafting moves a few class boundaries (99.51 % agreement on the worst test photograph, just inside the 99.5 %
    /// parity gate), a difference a user comparing with TorchServe would see.
    /// </summary>
    public bool JpegDraft { get; init; }

    /// <summary>
    /// <c>class_head</c>: append argmax and confidence to the graph and run it through an IO binding, for the requests
    /// that need only the class map at the model's resolution. Null: on for GPU workers (a C×H×W copy back from the
    /// device is what it saves), off on CPU.
    /// </summary>
    public bool? ClassHead { get; init; }

    /// <summary>
    /// <c>overlap_postprocess</c>: the argmax and the answer's bytes of one batch run on a pool thread while the worker
    /// preprocesses and runs the next (BaseHandler.PostprocessConcurrently). Off by default: on the 2-core bench it
    /// gained nothing at 8 clients and made 1 client slower (see bench/RESULTS.md).
    /// </summary>
    public bool OverlapPostprocess { get; init; }

    public bool UsesTta => Flip || Scales.Length != 1 || Scales[0] != 1.0;
    public bool UsesSlide => SlideCrop is not null;

    public static readonly string[] Modes = ["torchserve", "torchvision", "fixed", "original"];
    public static readonly string[] Outputs = ["torchserve", "mask", "color", "overlay", "summary", "tensors"];

    /// <summary>Reads the handler section; a bad value fails the model load with the key named.</summary>
    public static SegmenterOptions From(ConfigSection c)
    {
        var d = new SegmenterOptions();
        return Validate(new SegmenterOptions
        {
            Mode = c.GetString("mode") ?? d.Mode,
            ResizeSize = c.GetInt("resize_size") ?? d.ResizeSize,
            FixedSize = Pair(c.GetDoubleList("size"), "size") is { } s ? (s.A, s.B) : null,
            Mean = Triple(c.GetDoubleList("mean"), "mean") ?? d.Mean,
            Std = Triple(c.GetDoubleList("std"), "std") ?? d.Std,
            Scales = c.GetDoubleList("scales")?.ToArray() ?? d.Scales,
            Flip = c.GetBool("flip") ?? d.Flip,
            SlideCrop = Pair(c.GetDoubleList("crop_size"), "crop_size"),
            SlideStride = Pair(c.GetDoubleList("stride"), "stride"),
            Output = c.GetString("output") ?? d.Output,
            Alpha = c.GetDouble("alpha") ?? d.Alpha,
            Rle = c.GetBool("rle") ?? d.Rle,
            MaxPixels = c.GetInt("max_pixels") ?? d.MaxPixels,
            MaxRegions = c.GetInt("max_regions") ?? d.MaxRegions,
            JpegDraft = c.GetBool("jpeg_draft") ?? d.JpegDraft,
            ClassHead = c.GetBool("class_head"),
            OverlapPostprocess = c.GetBool("overlap_postprocess") ?? d.OverlapPostprocess,
        });
    }

    /// <summary>These options with the request's overrides; a bad value is a 400 for that request.</summary>
    public SegmenterOptions For(InferenceRequest request)
    {
        var overrides = new List<KeyValuePair<string, object?>>();
        foreach (var key in (string[])["output", "mode", "scales", "flip", "alpha", "rle", "crop_size", "stride", "resize_size", "size"])
        {
            if (request.GetString(key) is { } value) overrides.Add(new(key, value));
        }
        var output = OutputFromAccept(request.GetHeader("Accept"));
        if (output is not null && request.GetString("output") is null) overrides.Add(new("output", output));
        if (overrides.Count == 0) return this;

        var section = new ConfigSection(new Dictionary<string, object?>()).With(overrides);
        try
        {
            return Validate(this with
            {
                Output = section.GetString("output") ?? Output,
                Mode = section.GetString("mode") ?? Mode,
                Scales = section.GetDoubleList("scales")?.ToArray() ?? Scales,
                Flip = section.GetBool("flip") ?? Flip,
                Alpha = section.GetDouble("alpha") ?? Alpha,
                Rle = section.GetBool("rle") ?? Rle,
                SlideCrop = Pair(section.GetDoubleList("crop_size"), "crop_size") ?? SlideCrop,
                SlideStride = Pair(section.GetDoubleList("stride"), "stride") ?? SlideStride,
                ResizeSize = section.GetInt("resize_size") ?? ResizeSize,
                FixedSize = Pair(section.GetDoubleList("size"), "size") is { } s ? (s.A, s.B) : FixedSize,
            });
        }
        catch (FormatException e)
        {
            throw HandlerException.BadRequest(e.Message);
        }
    }

    private static string? OutputFromAccept(string? accept) => accept switch
    {
        null => null,
        _ when accept.Contains("image/png", StringComparison.OrdinalIgnoreCase) => "color",
        _ => null,
    };

    private static SegmenterOptions Validate(SegmenterOptions o)
    {
        if (Array.IndexOf(Modes, o.Mode) < 0) throw new FormatException($"mode '{o.Mode}' is not one of {string.Join(", ", Modes)}");
        var output = o.Output == "json" ? "torchserve" : o.Output;
        if (Array.IndexOf(Outputs, output) < 0) throw new FormatException($"output '{o.Output}' is not one of {string.Join(", ", Outputs)}");
        if (o.Mode == "fixed" && o.FixedSize is null) throw new FormatException("mode 'fixed' needs size: [width, height]");
        if (o.ResizeSize < 1) throw new FormatException("resize_size must be positive");
        if (o.Scales.Length == 0 || o.Scales.Any(s => s is <= 0 or > 8)) throw new FormatException("scales must be a non-empty list of numbers in (0, 8]");
        if (o.Alpha is < 0 or > 1) throw new FormatException("alpha must be between 0 and 1");
        if (o.SlideStride is not null && o.SlideCrop is null) throw new FormatException("stride needs crop_size");
        if (o.SlideCrop is { } c && (c.Height < 1 || c.Width < 1)) throw new FormatException("crop_size must be positive");
        if (o.SlideStride is { } st && (st.Height < 1 || st.Width < 1)) throw new FormatException("stride must be positive");
        if (o.UsesSlide && o.UsesTta) throw new FormatException("slide (crop_size) and multi-scale/flip cannot be combined");
        return o with { Output = output };
    }

    private static (int A, int B)? Pair(IReadOnlyList<double>? values, string key) => values switch
    {
        null => null,
        [var a, var b] when a >= 1 && b >= 1 => ((int)a, (int)b),
        [var a] when a >= 1 => ((int)a, (int)a),
        _ => throw new FormatException($"{key} must be one or two positive integers"),
    };

    private static float[]? Triple(IReadOnlyList<double>? values, string key) => values switch
    {
        null => null,
        { Count: 3 } => [(float)values[0], (float)values[1], (float)values[2]],
        _ => throw new FormatException($"{key} must be three numbers (R, G, B)"),
    };

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Mode}/{Output}");
}
