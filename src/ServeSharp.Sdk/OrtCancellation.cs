using Microsoft.ML.OnnxRuntime;

namespace ServeSharp.Sdk;

/// <summary>
/// Ties a batch's <see cref="CancellationToken"/> to ONNX Runtime: when the token fires (the model's responseTimeout,
/// or every client of the batch gone), <see cref="RunOptions.Terminate"/> stops the run between kernels and the run
/// ends in <see cref="OperationCanceledException"/>, which the worker reads as "cancelled", not "failed".
/// </summary>
public static class OrtCancellation
{
    /// <summary>Sets <paramref name="options"/>.Terminate when <paramref name="cancellationToken"/> fires; dispose to unlink.</summary>
    public static CancellationTokenRegistration Link(RunOptions options, CancellationToken cancellationToken) =>
        cancellationToken.Register(static o => ((RunOptions)o!).Terminate = true, options);

    /// <summary>
    /// Runs <paramref name="session"/> so that <paramref name="cancellationToken"/> stops it. The outputs belong to the
    /// caller (read them in place, then dispose).
    /// </summary>
    public static IDisposableReadOnlyCollection<OrtValue> Run(InferenceSession session, IReadOnlyCollection<string> inputNames,
        IReadOnlyCollection<OrtValue> inputs, IReadOnlyCollection<string> outputNames, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(session);
        cancellationToken.ThrowIfCancellationRequested();
        using var options = new RunOptions();
        using var link = Link(options, cancellationToken);
        try
        {
            return session.Run(options, inputNames, inputs, outputNames);
        }
        catch (OnnxRuntimeException e) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("ONNX Runtime's run was terminated: the batch was cancelled", e, cancellationToken);
        }
    }
}
