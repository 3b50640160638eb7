using System.Collections.Concurrent;
using System.Text.Json;
using ServeSharp.Sdk;

namespace ServeSharp.Tests.Server;

/// <summary>
/// A handler the in-process tests control (registered as the built-in <c>test_gate</c>): it answers each request
/// with its batch size and call number; <c>?block=KEY</c> waits for the test to open gate KEY (honouring the
/// batch's token, and recording that it was cancelled), <c>?stuck=KEY</c> waits ignoring the token, as a handler
/// that never checks it would; <c>?sleep_ms=N</c> sleeps, honouring it. <c>handler: fail_init_times: N</c> fails the first N initialisations of a model.
/// </summary>
internal sealed class GateHandler : IModelHandler
{
    private static readonly ConcurrentDictionary<string, TaskCompletionSource> Gates = new();
    private static readonly ConcurrentDictionary<string, TaskCompletionSource> CancelledGates = new();
    private static readonly ConcurrentDictionary<string, TaskCompletionSource> EnteredGates = new();
    private static readonly ConcurrentDictionary<string, int> InitAttempts = new();
    private static int _calls;

    public const string Name = "test_gate";

    public static IReadOnlyDictionary<string, Func<IModelHandler>> BuiltIn { get; } =
        new Dictionary<string, Func<IModelHandler>> { [Name] = () => new GateHandler() };

    /// <summary>The gate a request with <c>block</c>/<c>stuck</c> = <paramref name="key"/> waits for.</summary>
    public static TaskCompletionSource Gate(string key) => Gates.GetOrAdd(key, _ => new(TaskCreationOptions.RunContinuationsAsynchronously));

    /// <summary>Completes when a request blocked on <paramref name="key"/> saw its token cancelled.</summary>
    public static Task Cancelled(string key) => Signal(CancelledGates, key).Task;

    /// <summary>Completes when a request with <c>block</c>/<c>stuck</c> = <paramref name="key"/> reached the handler.</summary>
    public static Task Entered(string key) => Signal(EnteredGates, key).Task;

    private static TaskCompletionSource Signal(ConcurrentDictionary<string, TaskCompletionSource> signals, string key) =>
        signals.GetOrAdd(key, _ => new(TaskCreationOptions.RunContinuationsAsynchronously));

    public static int InitAttemptsOf(string model) => InitAttempts.GetValueOrDefault(model);

    public void Initialize(HandlerContext context)
    {
        var attempt = InitAttempts.AddOrUpdate(context.ModelName, 1, (_, n) => n + 1);
        if (attempt <= (context.HandlerConfig.GetInt("fail_init_times") ?? 0))
            throw new InvalidOperationException($"initialisation {attempt} failed on purpose");
    }

    public async Task<IReadOnlyList<HandlerOutput>> HandleAsync(IReadOnlyList<InferenceRequest> batch, CancellationToken cancellationToken)
    {
        var call = Interlocked.Increment(ref _calls);
        foreach (var request in batch)
        {
            if (int.TryParse(request.GetString("sleep_ms"), out var ms)) await Task.Delay(ms, cancellationToken);
            if (request.GetString("block") is { } key)
            {
                Signal(EnteredGates, key).TrySetResult();
                try
                {
                    await Gate(key).Task.WaitAsync(cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    Signal(CancelledGates, key).TrySetResult();
                    throw;
                }
            }
            if (request.GetString("stuck") is { } stuck)
            {
                Signal(EnteredGates, stuck).TrySetResult();
                Gate(stuck).Task.Wait(CancellationToken.None);
            }
        }
        var outputs = new HandlerOutput[batch.Count];
        for (var i = 0; i < batch.Count; i++)
        {
            outputs[i] = HandlerOutput.Text(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["batch"] = batch.Count,
                ["call"] = call,
                ["body"] = batch[i].Data?.AsString() ?? "",
                ["thread"] = Environment.CurrentManagedThreadId,
            }), "application/json");
        }
        return outputs;
    }

    public void Dispose() { }
}
