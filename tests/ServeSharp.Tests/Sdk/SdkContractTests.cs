using System.Reflection;
using Microsoft.ML.OnnxRuntime;
using ServeSharp.Handlers.Segmentation;
using ServeSharp.Sdk;
using ServeSharp.Tests.Segmentation;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Sdk;

/// <summary>What handler authors build against: a small surface, and cancellation that reaches ONNX Runtime.</summary>
[Collection("parity")]
public sealed class SdkContractTests(ParityModels models)
{
    [Fact]
    public void The_sdk_shows_handler_authors_neither_the_archive_code_nor_yaml()
    {
        var sdk = typeof(IModelHandler).Assembly;
        var references = sdk.GetReferencedAssemblies().Select(a => a.Name).ToList();
        Assert.DoesNotContain("ServeSharp.Archive", references);
        Assert.DoesNotContain("YamlDotNet", references);
        Assert.Contains("ServeSharp.Contracts", references);

        // Every type a public member of the SDK exposes comes from the SDK, the contracts, ONNX Runtime, logging or .NET.
        string[] allowed = ["ServeSharp.Sdk", "ServeSharp.Contracts", "Microsoft.ML.OnnxRuntime", "Microsoft.Extensions.Logging.Abstractions"];
        foreach (var type in sdk.GetExportedTypes())
        {
            foreach (var member in type.GetMembers(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
            {
                var exposed = member switch
                {
                    PropertyInfo p => [p.PropertyType],
                    MethodInfo m => [m.ReturnType, .. m.GetParameters().Select(x => x.ParameterType)],
                    _ => Array.Empty<Type>(),
                };
                foreach (var t in exposed.SelectMany(Flatten))
                    Assert.True(allowed.Contains(t.Assembly.GetName().Name) || t.Assembly.GetName().Name!.StartsWith("System.", StringComparison.Ordinal), $"{type.Name}.{member.Name} exposes {t.FullName} from {t.Assembly.GetName().Name}");
            }
        }
    }

    [Fact]
    public void Cancelling_the_token_terminates_onnx_runtime_runs()
    {
        using var session = new InferenceSession(TestModels.Tiny);
        using var input = OrtValue.CreateTensorValueFromMemory(new float[3 * 4 * 4], [1, 3, 4, 4]);

        // The link sets Terminate, and ONNX Runtime refuses to run (or stops) with it set.
        using var options = new RunOptions();
        using var cancel = new CancellationTokenSource();
        using (OrtCancellation.Link(options, cancel.Token))
        {
            Assert.False(options.Terminate);
            cancel.Cancel();
            Assert.True(options.Terminate);
        }
        Assert.Throws<OnnxRuntimeException>(() => session.Run(options, ["input"], [input], ["out"]));

        // A run under a cancelled token is a cancellation, not a failure; an uncancelled one runs.
        Assert.Throws<OperationCanceledException>(() => OrtCancellation.Run(session, ["input"], [input], ["out"], cancel.Token));
        using var outputs = OrtCancellation.Run(session, ["input"], [input], ["out"], CancellationToken.None);
        Assert.Equal(4 * 16, outputs[0].GetTensorDataAsSpan<float>().Length);
    }

    [Fact]
    public async Task A_token_that_fires_mid_run_stops_image_segmenter_inside_onnx_runtime()
    {
        using var segmenter = new SegmenterHarness(models.DeepLabV3Plus.Onnx, "  mode: original\n  output: mask\n");
        var large = Images.SolidPng(2048, 2048, 90, 140, 200);
        // Fire a third of the way into a run as long as a whole one just took: decoding and normalising are a small part
        // of it (inference dominates), so the token fires inside ONNX Runtime however loaded the machine is. A fixed
        // 150 ms fired before the run on a busy machine.
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        Assert.Null((await segmenter.RunAsync(large)).StatusCode);
        using var cancel = new CancellationTokenSource(System.Diagnostics.Stopwatch.GetElapsedTime(started) / 3);
        var error = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => segmenter.RunAsync(cancel.Token, (large, "")));
        // Terminated inside ONNX Runtime (the run had started), not refused before it.
        Assert.IsType<OnnxRuntimeException>(error.InnerException);

        // The same handler serves the next request.
        var next = await segmenter.RunAsync(Images.SolidPng(64, 48, 90, 140, 200));
        Assert.Null(next.StatusCode);
    }

    [Fact]
    public void Batched_logits_are_read_in_place_and_released_with_their_outputs()
    {
        using var session = new InferenceSession(TestModels.Tiny);
        var model = SegmentationModel.From(session, "tiny.onnx");
        var options = new SegmenterOptions();
        var image = ImageDecoder.Decode(Images.SolidPng(8, 6, 200, 10, 10), 1_000_000);
        using var a = Preprocessor.Prepare(image, options with { Mode = "original" });
        using var b = Preprocessor.Prepare(image, options with { Mode = "original" });
        var outputs = SegInference.RunBatch(model, [a, b], CancellationToken.None);
        try
        {
            Assert.All(outputs, o => Assert.False(System.Runtime.InteropServices.MemoryMarshal.TryGetArray(o.Scores!.Data, out _), "logits were copied into an array"));
            Assert.Equal(outputs[0].Scores!.Data.ToArray(), outputs[1].Scores!.Data.ToArray());
            // Class 0's logit is the pixel's normalised red (the tiny model is an identity on the first three channels).
            Assert.Equal((200f / 255f - 0.485f) / 0.229f, outputs[0].Scores!.Data.Span[0], 1e-4f);
        }
        finally
        {
            foreach (var o in outputs) o.Dispose();
        }
    }

    private static IEnumerable<Type> Flatten(Type t) =>
        t.IsGenericType ? [t.GetGenericTypeDefinition(), .. t.GetGenericArguments().SelectMany(Flatten)]
        : t.HasElementType ? Flatten(t.GetElementType()!)
        : t.IsGenericParameter ? [] : [t];
}
