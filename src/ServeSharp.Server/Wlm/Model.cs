using Microsoft.Extensions.Logging;
using ServeSharp.Archive;
using ServeSharp.Loader;
using ServeSharp.Server.Metrics;

namespace ServeSharp.Server.Wlm;

/// <summary>
/// One registered model version (TorchServe's Model): its archive and handler factory, its settings, its
/// lifecycle state, its batch aggregator (which owns the job queue) and its workers. The queue outlives the
/// workers, so scaling never drops a queued request.
/// </summary>
internal sealed class Model : IDisposable
{
    private readonly object _gate = new();
    private readonly List<WorkerThread> _workers = [];
    private readonly CancellationTokenSource _lifetime = new();
    private WorkerSettings _settings;
    private int _state = (int)ModelState.Loading;
    private Task _aggregating = Task.CompletedTask;

    public Model(string name, string version, string url, ModelArchive archive, HandlerFactory factory, WorkerSettings settings,
        int jobQueueSize, bool loadedAtStartup, ServerMetrics metrics, TimeProvider time, ILogger logger)
    {
        Name = name;
        Version = version;
        Url = url;
        Archive = archive;
        Factory = factory;
        _settings = settings;
        LoadedAtStartup = loadedAtStartup;
        Aggregator = new BatchAggregator(this, jobQueueSize, metrics, time, logger);
    }

    public string Name { get; }
    public string Version { get; }
    public string Url { get; }

    /// <summary>The url a restart registers this model from (the model-store file for downloaded archives).</summary>
    public string SnapshotUrl { get; init; } = "";

    /// <summary>The archive register downloaded into the model store from a URL (unregister deletes it), or null.</summary>
    public string? DownloadedArchive { get; init; }

    /// <summary>TorchServe's runtime (the management API's <c>runtime</c>, else the manifest's), for describe and snapshots.</summary>
    public string Runtime { get; init; } = "python";

    /// <summary>The management API's <c>handler</c> parameter, when it replaced the archive's.</summary>
    public string? HandlerOverride { get; init; }
    public ModelArchive Archive { get; }
    public HandlerFactory Factory { get; }
    public bool LoadedAtStartup { get; }
    public BatchAggregator Aggregator { get; }

    /// <summary>Serialises scaling of this model (register, scale, replace, unregister).</summary>
    public SemaphoreSlim ScaleGate { get; } = new(1, 1);

    /// <summary>Cancelled when the model starts draining: back-off waits and pending starts end.</summary>
    public CancellationToken Lifetime => _lifetime.Token;

    private int _failures;

    private long _recoveringSince;
    private int _deviceCounter;

    /// <summary>The next index into deviceIds for a new worker (TorchServe's per-model counter).</summary>
    public int NextDeviceIndex(int count) => GpuAssignment.NextOwn(ref _deviceCounter, count);

    /// <summary>
    /// Counts a worker that failed to load or died; returns how many failed in a row before it (TorchServe's back-off index).
    /// The first failure of a row starts the recovery clock (<paramref name="now"/>, a TimeProvider timestamp).
    /// </summary>
    public int RecordFailure(long now)
    {
        Interlocked.CompareExchange(ref _recoveringSince, now, 0);
        return Interlocked.Increment(ref _failures) - 1;
    }

    /// <summary>A worker loaded: the next failure starts the back-off (and the recovery clock) from the beginning.</summary>
    public void ResetFailures()
    {
        Volatile.Write(ref _failures, 0);
        Volatile.Write(ref _recoveringSince, 0);
    }

    /// <summary>When the current row of failures began (TimeProvider timestamp), or null when no worker is being recovered.</summary>
    public long? RecoveringSince => Volatile.Read(ref _recoveringSince) is var t && t != 0 ? t : null;

    /// <summary>Failed loads (or deaths) in a row, for describe.</summary>
    public int ConsecutiveFailures => Volatile.Read(ref _failures);

    public ModelState State => (ModelState)Volatile.Read(ref _state);

    public WorkerSettings Settings
    {
        get { lock (_gate) return _settings; }
        set { lock (_gate) _settings = value; }
    }

    public IReadOnlyList<WorkerThread> Workers
    {
        get { lock (_gate) return [.. _workers]; }
    }

    /// <summary>Workers loading or serving (not failed, stopping or gone).</summary>
    public int LiveWorkerCount
    {
        get { lock (_gate) return _workers.Count(w => w.IsLive); }
    }

    public int ReadyWorkerCount
    {
        get { lock (_gate) return _workers.Count(w => w.State is WorkerState.Ready or WorkerState.Busy); }
    }

    /// <summary>The state machine's only door: moves when the current state is <paramref name="from"/>.</summary>
    public bool TryMove(ModelState from, ModelState to)
    {
        var allowed = (from, to) switch
        {
            (ModelState.Loading, ModelState.Ready or ModelState.Failed or ModelState.Draining) => true,
            (ModelState.Ready, ModelState.Failed or ModelState.Draining) => true,
            (ModelState.Failed, ModelState.Ready or ModelState.Draining) => true,
            (ModelState.Draining, ModelState.Unloaded) => true,
            _ => false,
        };
        if (!allowed) return false;
        var moved = Interlocked.CompareExchange(ref _state, (int)to, (int)from) == (int)from;
        if (moved && to == ModelState.Draining) _lifetime.Cancel();
        return moved;
    }

    /// <summary>Moves to <paramref name="to"/> from whichever of <paramref name="from"/> holds now.</summary>
    public bool TryMove(ModelState to, params ModelState[] from)
    {
        foreach (var f in from)
        {
            if (TryMove(f, to)) return true;
        }
        return false;
    }

    public void StartAggregating() => _aggregating = Aggregator.RunAsync(Lifetime);

    /// <summary>The aggregator's loop, for the drain to await.</summary>
    public Task Aggregating => _aggregating;

    private readonly Dictionary<int, Sdk.SharedSession> _sessions = [];

    /// <summary>
    /// The ONNX Runtime session the model's workers share on <paramref name="gpu"/> (CPU: null) under sharedSession: a
    /// session is bound to one device. Its workers' handlers acquire and release it; the last release frees it.
    /// </summary>
    public Sdk.SharedSession SharedSessionFor(int? gpu, ILogger logger)
    {
        lock (_gate)
        {
            var key = gpu ?? -1;
            if (!_sessions.TryGetValue(key, out var shared)) _sessions[key] = shared = new Sdk.SharedSession(Name, logger);
            return shared;
        }
    }

    internal void Add(WorkerThread worker)
    {
        lock (_gate) _workers.Add(worker);
    }

    internal void Remove(WorkerThread worker)
    {
        lock (_gate) _workers.Remove(worker);
    }

    // The lifetime token and the scale gate stay usable after disposal (late describe calls, a replacement that lost
    // the race with unregister); neither holds a native resource.
    public void Dispose()
    {
        Factory.Dispose();
        Archive.Dispose();
    }
}
