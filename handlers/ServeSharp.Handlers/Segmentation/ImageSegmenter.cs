using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using ServeSharp.Handlers.Segmentation.Graph;
using ServeSharp.Sdk;

namespace ServeSharp.Handlers.Segmentation;

/// <summary>
/// The built-in <c>image_segmenter</c>: TorchServe's segmentation handler for ONNX DeepLab-family models, plus
/// preprocessing modes, multi-scale/flip TTA, sliding windows, and mask, colour, overlay and summary outputs.
/// A batch may mix image sizes: requests are grouped by input size and each group runs as one batch
/// (padding would change every pixel's answer through the ASPP's image pooling).
/// </summary>
internal sealed class ImageSegmenter : BaseHandler<SegInput, SegOutput>
{
    private SegmenterOptions _options = new();
    private SegmentationModel _model = null!;
    private Palette _palette = Palette.Voc;
    private ClassNames _names = ClassNames.Load(null);
    private ClassHeadRunner? _head;

    // Why this worker's session has no class head, for describe (null when it has one).
    private string? _noHeadReason;

    // The worker's planned share of the cores (its ONNX Runtime threads), which sit idle outside a run: per-pixel work
    // after it (argmax and softmax, TorchServe's JSON) is split over them.
    private int _parallelism = 1;

    public override void Initialize(HandlerContext context)
    {
        // Read first: they decide which graph the session opens on (OpenSession).
        try
        {
            _options = SegmenterOptions.From(context.HandlerConfig);
        }
        catch (FormatException e)
        {
            throw new HandlerLoadException($"model-config.yaml handler section: {e.Message}", e);
        }
        base.Initialize(context);
        _parallelism = context.SystemProperties.IntraOpThreads is > 0 and var threads ? threads : Environment.ProcessorCount;
        var file = context.Manifest.SerializedFile ?? throw new HandlerLoadException("image_segmenter needs the archive's serializedFile (an ONNX model)");
        _model = SegmentationModel.From(Session!, file);
        if (_model.FixedInputSize is { } size && (_options.Mode != "fixed" || _options.FixedSize != (size.W, size.H)))
            throw new HandlerLoadException($"{file} has a fixed input size {size.W}x{size.H}: set mode: fixed and size: [{size.W}, {size.H}] in the handler section");

        var paletteFile = context.HandlerConfig.GetString("palette_file") ?? "palette.json";
        if (File.Exists(context.PathOf(paletteFile))) _palette = Palette.Load(context.PathOf(paletteFile));
        _names = ClassNames.Load(context.PathOf(context.HandlerConfig.GetString("index_to_name") ?? "index_to_name.json"));
        // Decided by the session, not by this worker's options: with sharedSession another worker may have opened it.
        if (Session!.OutputMetadata.ContainsKey(ClassHead.Classes))
        {
            _head = new ClassHeadRunner(Session, _model.InputName);
            _noHeadReason = null;
        }
        else _noHeadReason ??= "another worker opened the shared session without it";
    }

    /// <summary>The class-head path, when this worker has one (tests look at how often it ran).</summary>
    internal ClassHeadRunner? Head => _head;

    /// <summary>With the class head on (<c>class_head</c>, or a GPU worker) and a model that outputs logits, opens the graph with the head appended.</summary>
    protected override InferenceSession OpenSession(HandlerContext context, string modelPath)
    {
        if (!(_options.ClassHead ?? context.SystemProperties.DeviceType == "gpu"))
        {
            _noHeadReason = _options.ClassHead is false ? "class_head: false" : "off on CPU workers unless class_head: true";
            return base.OpenSession(context, modelPath);
        }
        var bytes = File.ReadAllBytes(modelPath);
        string? logits;
        try
        {
            // Weights in a file beside the model: it must be opened from its path, as it is, without the head.
            if (GraphOutputs.UsesExternalData(bytes))
            {
                _noHeadReason = "the model keeps its weights in an external file";
                return base.OpenSession(context, modelPath);
            }
            logits = GraphOutputs.Logits(bytes);
        }
        catch (InvalidDataException)
        {
            // Not a graph we can read: ONNX Runtime opens it as it is and says what is wrong with it.
            _noHeadReason = "the graph could not be read to append it";
            return base.OpenSession(context, modelPath);
        }
        // No float logits to put a head on (a model that ends in argmax).
        if (logits is null)
        {
            _noHeadReason = "the model has no float logits output";
            return base.OpenSession(context, modelPath);
        }
        return OrtSessionFactory.Create(ClassHead.Append(bytes, logits), Path.GetFileName(modelPath), context.SystemProperties, context.Logger);
    }

    /// <summary>
    /// TorchServe's describe_handle (<c>GET /models/{name}?customized=true</c>): the preset, and whether
    /// the worker that answers runs the class head (argmax and confidence inside the graph) and how often it has — the
    /// way to see on a GPU host that mask and JSON answers copy back H×W values, not the logits.
    /// </summary>
    protected override JsonObject? Describe()
    {
        var handedBack = _head is { HandedBack: true };
        var metadata = new JsonObject
        {
            ["mode"] = _options.Mode,
            ["output"] = _options.Output,
            ["classHead"] = _head is not null && !handedBack,
            ["classHeadRuns"] = _head?.Runs ?? 0,
        };
        var note = handedBack ? "the model's output is smaller than its input: the logits are resized before the argmax" : _noHeadReason;
        if (note is not null) metadata["classHeadNote"] = note;
        return metadata;
    }

    // Postprocess reads its own output (which holds its run's ONNX Runtime buffers, or maps of its own from the class
    // head), its request and what Initialize set: with overlap_postprocess, one batch's argmax and JSON can run while
    // the model runs the next.
    protected override bool PostprocessConcurrently => _options.OverlapPostprocess;

    protected override SegInput Preprocess(InferenceRequest request)
    {
        var options = _options.For(request);
        if (SegTensors.Prepare(request, options, _model.FixedInputSize) is { } fromTensor) return fromTensor;
        var decoding = request.Clock.GetTimestamp();
        var image = ImageDecoder.Decode(request, options.MaxPixels, (w, h) => Preprocessor.DraftSize(w, h, options), out var width, out var height);
        request.AddStageTime(RequestStage.Decode, decoding);
        return Preprocessor.Prepare(image, width, height, options);
    }

    protected override IReadOnlyList<SegOutput> Inference(IReadOnlyList<SegInput> inputs, IReadOnlyList<InferenceRequest> requests, CancellationToken cancellationToken)
    {
        var outputs = new SegOutput[inputs.Count];
        var groups = new Dictionary<(int, int, bool), List<int>>();
        for (var i = 0; i < inputs.Count; i++)
        {
            var input = inputs[i];
            if (input.Options.UsesSlide) outputs[i] = SegInference.RunSlide(_model, input, cancellationToken);
            else if (input.Options.UsesTta) outputs[i] = SegInference.RunTta(_model, input, cancellationToken);
            else
            {
                var key = (input.Geometry.BaseHeight, input.Geometry.BaseWidth, _head is not null && NeedsOnlyClassMap(input, requests[i]));
                if (!groups.TryGetValue(key, out var members)) groups[key] = members = [];
                members.Add(i);
            }
        }
        try
        {
            foreach (var ((_, _, head), members) in groups)
            {
                var group = members.ConvertAll(i => inputs[i]);
                var results = head ? SegInference.RunHead(_head!, _model, group, cancellationToken) : SegInference.RunBatch(_model, group, cancellationToken);
                for (var k = 0; k < members.Count; k++) outputs[members[k]] = results[k];
            }
        }
        catch
        {
            // Results already made hold ONNX Runtime's buffers: release them, nobody will postprocess them.
            foreach (var output in outputs) output?.Dispose();
            throw;
        }
        return outputs;
    }

    /// <summary>
    /// Whether the request's answer is a function of the class map and confidence at the model's resolution only: TorchServe's
    /// JSON in torchserve mode, any output of a centre crop (placed back by nearest neighbour), or an image the model sees
    /// at its own size. Elsewhere the logits are resized to the image before the argmax, and probabilities are logits' work.
    /// </summary>
    private static bool NeedsOnlyClassMap(SegInput input, InferenceRequest request)
    {
        var o = input.Options;
        var g = input.Geometry;
        if (o.Output == "tensors" && request.GetString(Tensor.RequestedOutputsParameter) is { } asked && asked.Contains(SegTensors.Probabilities, StringComparison.Ordinal))
            return false;
        var atBase = o.Mode == "torchserve" && o.Output is "torchserve" or "tensors";
        return atBase || g.IsCropped || (g.OriginalWidth == g.BaseWidth && g.OriginalHeight == g.BaseHeight);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _head?.Dispose();
            _head = null;
        }
        base.Dispose(disposing);
    }

    protected override HandlerOutput Postprocess(SegOutput output, InferenceRequest request)
    {
        var o = output.Input.Options;
        if (o.Output == "tensors") return SegTensors.Write(output, request);
        if (o.Output == "overlay" && output.Input.Image.Pixels.Length == 0)
            throw HandlerException.BadRequest("output 'overlay' needs an image; the request sent the model's input tensor");
        // TorchServe answers at the model's resolution in its own mode; elsewhere at the image's size.
        var map = o.Output == "torchserve" && o.Mode == "torchserve" ? MapDecoder.AtBase(output, _parallelism) : MapDecoder.ToOriginal(output, _parallelism);
        var serializing = request.Clock.GetTimestamp();
        var answer = o.Output switch
        {
            "torchserve" => OutputWriter.TorchServeJson(map, _parallelism),
            "mask" => HandlerOutput.Bytes(OutputWriter.MaskPng(map), "image/png"),
            "color" => HandlerOutput.Bytes(OutputWriter.ColorPng(map, _palette), "image/png"),
            "overlay" => HandlerOutput.Bytes(OutputWriter.OverlayPng(map, output.Input.Image, _palette, o.Alpha), "image/png"),
            _ => HandlerOutput.JsonBytes(Summary.Json(map, _names, _palette, o.MaxRegions, o.Rle)),
        };
        request.AddStageTime(RequestStage.Serialize, serializing);
        return answer;
    }
}
