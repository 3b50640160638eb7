using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ServeSharp.Server.Wlm;

/// <summary>
/// Writes config snapshots off the request path: every model change hands over the whole list, only the newest
/// waiting list is kept, and stopping the host writes whatever was still asked for. The kind names the file as
/// TorchServe does: "startup", "snapshot" (a model change) or "shutdown".
/// </summary>
internal sealed partial class SnapshotWriter(SnapshotStore store, ILogger<SnapshotWriter> logger) : BackgroundService
{
    private readonly Channel<(IReadOnlyList<SnapshotEntry> Entries, string Kind)> _pending = Channel.CreateBounded<(IReadOnlyList<SnapshotEntry>, string)>(
        new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });

    public SnapshotStore Store => store;

    public void Request(IReadOnlyList<SnapshotEntry> entries, string kind = "snapshot") => _pending.Writer.TryWrite((entries, kind));

    // Not tied to the host's stopping token: the loop ends when the channel is completed, after the last write.
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await foreach (var (entries, kind) in _pending.Reader.ReadAllAsync(CancellationToken.None))
        {
            try
            {
                store.Save(entries, kind);
            }
            catch (IOException e)
            {
                LogFailed(logger, e);
            }
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _pending.Writer.TryComplete();
        if (ExecuteTask is { } loop) await loop.WaitAsync(cancellationToken);
    }

    [LoggerMessage(EventId = 5001, Level = LogLevel.Error, Message = "Could not write the config snapshot")]
    private static partial void LogFailed(ILogger logger, Exception error);
}
