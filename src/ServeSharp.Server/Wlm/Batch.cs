namespace ServeSharp.Server.Wlm;

/// <summary>
/// The jobs a worker runs in one handler call, and the token that call gets: it fires when the model's
/// responseTimeout has passed since the batch started, or when every client of the batch has gone away
/// (one client leaving does not cancel the work the others still wait for).
/// </summary>
internal sealed class Batch : IDisposable
{
    private readonly CancellationTokenSource _timeout;
    private readonly CancellationTokenSource _allGone = new();
    private readonly CancellationTokenSource _linked;
    private readonly CancellationTokenRegistration[] _registrations;
    private int _live;

    public Batch(IReadOnlyList<Job> jobs, TimeSpan responseTimeout, TimeProvider time)
    {
        Jobs = jobs;
        _timeout = new CancellationTokenSource(responseTimeout, time);
        _linked = CancellationTokenSource.CreateLinkedTokenSource(_timeout.Token, _allGone.Token);
        _live = jobs.Count;
        _registrations = new CancellationTokenRegistration[jobs.Count];
        for (var i = 0; i < jobs.Count; i++)
            _registrations[i] = jobs[i].CancellationToken.UnsafeRegister(static b => ((Batch)b!).ClientGone(), this);
    }

    public IReadOnlyList<Job> Jobs { get; }

    /// <summary>Given to the handler; cancelling it reaches ONNX Runtime through RunOptions.Terminate.</summary>
    public CancellationToken Token => _linked.Token;

    /// <summary>Fires only on responseTimeout (the jobs are then answered with a timeout error).</summary>
    public CancellationToken TimeoutToken => _timeout.Token;

    public bool TimedOut => _timeout.IsCancellationRequested;

    private void ClientGone()
    {
        if (Interlocked.Decrement(ref _live) == 0) _allGone.Cancel();
    }

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
        _linked.Dispose();
        _timeout.Dispose();
        _allGone.Dispose();
    }
}
