using System.Threading.Channels;
using ServeSharp.Archive;
using ServeSharp.Loader;

namespace ServeSharp.Server.Wlm;

/// <summary>
/// One registered model version: its archive, its handler factory, its bounded job queue and its workers.
/// Workers come and go (scaling); the queue stays, so scaling never drops a queued request.
/// </summary>
public sealed class Model : IDisposable
{
    private readonly object _gate = new();
    private readonly List<WorkerThread> _workers = [];
    private WorkerSettings _settings;

    public Model(string name, string version, string url, ModelArchive archive, HandlerFactory factory, WorkerSettings settings, int jobQueueSize, bool loadedAtStartup)
    {
        Name = name;
        Version = version;
        Url = url;
        Archive = archive;
        Factory = factory;
        _settings = settings;
        LoadedAtStartup = loadedAtStartup;
        QueueCapacity = jobQueueSize;
        // Bounded, and written with TryWrite: a full queue answers 503 at once instead of holding the client.
        Queue = Channel.CreateBounded<Job>(new BoundedChannelOptions(jobQueueSize) { FullMode = BoundedChannelFullMode.Wait, SingleReader = false });
    }

    public string Name { get; }
    public string Version { get; }
    public string Url { get; }

    /// <summary>The url a restart registers this model from (the model-store file for downloaded archives).</summary>
    public string SnapshotUrl { get; init; } = "";
    public ModelArchive Archive { get; }
    public HandlerFactory Factory { get; }
    public bool LoadedAtStartup { get; }
    public Channel<Job> Queue { get; }
    public int QueueCapacity { get; }

    /// <summary>Set once the model is being unregistered: no new workers start for it.</summary>
    public bool Retired { get; internal set; }

    public WorkerSettings Settings
    {
        get { lock (_gate) return _settings; }
        set { lock (_gate) _settings = value; }
    }

    public IReadOnlyList<WorkerThread> Workers
    {
        get { lock (_gate) return [.. _workers]; }
    }

    /// <summary>Whether any worker is listed (loading, serving, stopping, or about to be replaced).</summary>
    public bool HasWorkers
    {
        get { lock (_gate) return _workers.Count > 0; }
    }

    /// <summary>Workers that are loading or serving (not stopping or gone).</summary>
    public int ActiveWorkerCount
    {
        get { lock (_gate) return _workers.Count(w => w.Status is WorkerStatus.Loading or WorkerStatus.Ready); }
    }

    public int ReadyWorkerCount
    {
        get { lock (_gate) return _workers.Count(w => w.Status == WorkerStatus.Ready); }
    }

    internal void Add(WorkerThread worker)
    {
        lock (_gate) _workers.Add(worker);
    }

    internal void Remove(WorkerThread worker)
    {
        lock (_gate) _workers.Remove(worker);
    }

    /// <summary>Fails every job still queued (the model is going away).</summary>
    internal void FailQueued(string message)
    {
        while (Queue.Reader.TryRead(out var job)) job.TryFail(503, message, "ServiceUnavailableException");
    }

    public void Dispose()
    {
        Factory.Dispose();
        Archive.Dispose();
    }
}
