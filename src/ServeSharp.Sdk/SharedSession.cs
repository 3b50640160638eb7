using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace ServeSharp.Sdk;

/// <summary>
/// One ONNX Runtime session that the workers of a model share (model-config.yaml <c>sharedSession: true</c>), instead of
/// one each: the weights and the session's planned memory are held once. An <see cref="InferenceSession"/> is safe to
/// <c>Run</c> from several threads at once. The server owns one per model (per GPU); each worker's handler acquires it
/// when it initialises and releases it when it is disposed, and the last release disposes the session, so a scale-down
/// leaves the other workers serving and an unregister frees it.
/// </summary>
public sealed partial class SharedSession
{
    private readonly object _gate = new();
    private readonly string _model;
    private readonly ILogger _logger;
    private InferenceSession? _session;
    private int _users;

    /// <summary>A share for <paramref name="model"/>'s workers; <paramref name="logger"/> says when its session is created and freed.</summary>
    public SharedSession(string model, ILogger logger)
    {
        _model = model;
        _logger = logger;
    }

    /// <summary>How many handlers hold the session now.</summary>
    public int Users
    {
        get { lock (_gate) return _users; }
    }

    /// <summary>How many sessions this share has created over its life (one, unless every holder left and another came).</summary>
    public int Created { get; private set; }

    /// <summary>The session, created by <paramref name="create"/> for the first holder; every call needs its <see cref="Release"/>.</summary>
    public InferenceSession Acquire(Func<InferenceSession> create)
    {
        ArgumentNullException.ThrowIfNull(create);
        lock (_gate)
        {
            // Created under the lock: workers that load together wait for the one session rather than each making one.
            if (_session is null)
            {
                _session = create();
                Created++;
                LogCreated(_logger, _model);
            }
            _users++;
            return _session;
        }
    }

    /// <summary>One holder is done with the session; the last one disposes it.</summary>
    public void Release()
    {
        InferenceSession? last = null;
        lock (_gate)
        {
            if (_users == 0) return;
            if (--_users == 0)
            {
                last = _session;
                _session = null;
            }
        }
        if (last is null) return;
        last.Dispose();
        LogFreed(_logger, _model);
    }

    [LoggerMessage(EventId = 5101, Level = LogLevel.Information, Message = "Model {Model}: created the ONNX Runtime session its workers share (sharedSession)")]
    private static partial void LogCreated(ILogger logger, string model);

    [LoggerMessage(EventId = 5102, Level = LogLevel.Information, Message = "Model {Model}: freed the shared ONNX Runtime session (its last worker stopped)")]
    private static partial void LogFreed(ILogger logger, string model);
}
