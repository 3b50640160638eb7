using System.Collections.Concurrent;

namespace ServeSharp.Server;

/// <summary>
/// The server's stop, as Kubernetes expects it: once <see cref="Begin"/> is called (SIGTERM, SIGINT, --stop), readiness
/// answers false, requests that arrive are refused (503, or gRPC's UNAVAILABLE), and the requests admitted before go on
/// to their answers. <see cref="WhenIdleAsync"/> tells when the last one has been answered; requests still running when
/// the grace period is over are aborted through <see cref="AbortAll"/> (their jobs are cancelled like a client's leaving).
/// The listeners stay open meanwhile, so health probes see the drain instead of a refused connection.
/// </summary>
internal sealed class ServerDrain
{
    private readonly ConcurrentDictionary<HttpContext, byte> _inFlight = new();
    private readonly TaskCompletionSource _idle = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _count;
    private int _draining;

    public bool Draining => Volatile.Read(ref _draining) == 1;

    /// <summary>Requests admitted and not yet answered.</summary>
    public int InFlight => Volatile.Read(ref _count);

    /// <summary>
    /// Admits a request unless the drain has begun; an admitted request must be <see cref="Leave"/>-d. The count is
    /// raised before the flag is read (both full fences), so a drain that reads zero has no admission in progress.
    /// </summary>
    public bool TryEnter(HttpContext http)
    {
        Interlocked.Increment(ref _count);
        if (Draining)
        {
            Leave(http);
            return false;
        }
        _inFlight.TryAdd(http, 0);
        return true;
    }

    public void Leave(HttpContext http)
    {
        _inFlight.TryRemove(http, out _);
        if (Interlocked.Decrement(ref _count) == 0 && Draining) _idle.TrySetResult();
    }

    /// <summary>Stops admitting; from now on readiness is false.</summary>
    public void Begin()
    {
        Interlocked.Exchange(ref _draining, 1);
        if (Volatile.Read(ref _count) == 0) _idle.TrySetResult();
    }

    /// <summary>Completes when every admitted request has been answered (after <see cref="Begin"/>).</summary>
    public Task WhenIdleAsync(CancellationToken cancellationToken) => _idle.Task.WaitAsync(cancellationToken);

    /// <summary>Aborts the requests still in flight (their connections close; their jobs see the client leave).</summary>
    public int AbortAll()
    {
        var aborted = 0;
        foreach (var http in _inFlight.Keys)
        {
            http.Abort();
            aborted++;
        }
        return aborted;
    }
}
