using System.Collections.Concurrent;
using ServeSharp.Sdk;

namespace ServeSharp.Tests.Server;

/// <summary>
/// A <see cref="BaseHandler{TInput,TOutput}"/> that postprocesses concurrently (registered as the built-in
/// <c>test_overlap</c>): it answers each request with its body; <c>?hold=KEY</c> holds that request's postprocess until
/// the test opens gate KEY; <c>?fail=1</c> makes its postprocess throw. Signals say when a request's inference ran and
/// when its postprocess began.
/// </summary>
internal sealed class OverlapHandler : BaseHandler<string, string>
{
    private static readonly ConcurrentDictionary<string, TaskCompletionSource> Signals = new();

    public const string Name = "test_overlap";

    public static IReadOnlyDictionary<string, Func<IModelHandler>> BuiltIn { get; } =
        new Dictionary<string, Func<IModelHandler>> { [Name] = () => new OverlapHandler(), [GateHandler.Name] = () => new GateHandler() };

    public static TaskCompletionSource Signal(string name) => Signals.GetOrAdd(name, _ => new(TaskCreationOptions.RunContinuationsAsynchronously));

    protected override bool PostprocessConcurrently => true;

    protected override string Preprocess(InferenceRequest request) => request.Data?.AsString() ?? "";

    protected override IReadOnlyList<string> Inference(IReadOnlyList<string> inputs, IReadOnlyList<InferenceRequest> requests)
    {
        foreach (var input in inputs) Signal($"inferred:{input}").TrySetResult();
        return inputs;
    }

    protected override HandlerOutput Postprocess(string output, InferenceRequest request)
    {
        Signal($"postprocessing:{output}").TrySetResult();
        if (request.GetString("hold") is { } key && !Signal($"gate:{key}").Task.Wait(TimeSpan.FromSeconds(60)))
            throw new TimeoutException("the test never opened the gate");
        if (request.GetString("fail") is not null) throw new InvalidOperationException($"postprocess of {output} failed on purpose");
        return HandlerOutput.Text(output, "text/plain");
    }
}
