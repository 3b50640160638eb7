using Microsoft.ML.OnnxRuntime;
using ServeSharp.Handlers.Segmentation;
using ServeSharp.Handlers.Segmentation.Graph;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Segmentation;

/// <summary>
/// The per-pixel head appended to a model's graph (for the GPU path: argmax and confidence computed on the device) runs
/// on ONNX Runtime's CPU provider and gives what the handler computes from the logits itself.
/// </summary>
public sealed class ClassHeadTests
{
    // The exported models are opset 13; the tiny one (convolutions only, unchanged since opset 11) is also relabelled
    // 11 and 18 to take the other ReduceSum / ReduceMax forms.
    [Theory]
    [InlineData("tiny", null)]
    [InlineData("tiny", 11)]
    [InlineData("tiny", 18)]
    [InlineData("deeplabv3plus_mobilenet_v3_large", null)]
    public void The_appended_head_agrees_with_the_handlers_own_argmax_and_softmax(string which, int? opset)
    {
        var bytes = File.ReadAllBytes(which == "tiny" ? TestModels.Tiny : new ParityModels().DeepLabV3Plus.Onnx);
        if (opset is { } version) bytes = WithOpset(bytes, version);
        using var plain = new InferenceSession(bytes);
        var input = plain.InputMetadata.Keys.Single();
        var logits = plain.OutputMetadata.Keys.First();
        using var headed = new InferenceSession(ClassHead.Append(bytes, logits));

        const int n = 2, h = 64, w = 80;
        var random = new Random(5);
        var data = new float[n * 3 * h * w];
        for (var i = 0; i < data.Length; i++) data[i] = (float)(random.NextDouble() * 4 - 2);
        using var options = new RunOptions();
        using var image = OrtValue.CreateTensorValueFromMemory(data, [n, 3, h, w]);
        using var scores = plain.Run(options, [input], [image], [logits]);
        using var head = headed.Run(options, [input], [image], [ClassHead.Classes, ClassHead.Confidence]);

        var shape = scores[0].GetTensorTypeAndShape().Shape;
        var (c, pixels) = ((int)shape[1], (int)(shape[2] * shape[3]));
        Assert.Equal([n, shape[2], shape[3]], head[0].GetTensorTypeAndShape().Shape);
        var classes = head[0].GetTensorDataAsSpan<long>();
        var confidence = head[1].GetTensorDataAsSpan<float>();
        Assert.True(classes.IndexOfAnyExcept(classes[0]) >= 0, "every pixel has the same class: the comparison below would prove little");
        var best = new byte[pixels];
        var probs = new float[pixels];
        for (var b = 0; b < n; b++)
        {
            Argmax.Planes(scores[0].GetTensorDataAsSpan<float>().Slice(b * c * pixels, c * pixels), c, pixels, probabilities: false, best, probs);
            for (var i = 0; i < pixels; i++)
            {
                Assert.Equal(best[i], classes[b * pixels + i]);
                Assert.InRange(confidence[b * pixels + i], probs[i] - 1e-5f, probs[i] + 1e-5f);
            }
        }
    }

    // ModelProto.opset_import (8) for the default domain, rewritten to OperatorSetIdProto { version (2) }.
    private static byte[] WithOpset(byte[] model, int version)
    {
        var writer = new ProtoWriter();
        foreach (var field in ProtoReader.Fields(model))
        {
            if (field.Number == 8) writer.Message(8, new ProtoWriter().Varint(2, version));
            else writer.Copy(field.Whole.Span);
        }
        return writer.Written.ToArray();
    }

    [Fact]
    public void A_file_that_is_not_an_onnx_model_is_refused_plainly() =>
        Assert.Throws<InvalidDataException>(() => ClassHead.Append("not a model at all"u8.ToArray(), "out"));
}
