using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using ServeSharp.Archive;
using ServeSharp.Handlers;
using ServeSharp.Loader;
using ServeSharp.Sdk;

namespace ServeSharp.Server.Workers;

/// <summary>
/// <c>servesharp worker --socket PATH</c>: the child side of a process worker. It connects back to the server,
/// loads the handler through the same loader the server uses, and runs batches on a thread of its own while its
/// reader answers pings and cancels. When the server goes away (the socket closes) it exits at once, even if the
/// handler is still running.
/// </summary>
internal static partial class WorkerHost
{
    public static async Task<int> RunAsync(string[] args)
    {
        if (args is not ["--socket", var socketPath]) return Usage();
        var token = Console.In.ReadLine() ?? "";
        // A Ctrl-C or a service manager's SIGTERM reaches the whole process group: the server drains, and its worker
        // processes must live until it stops them (stop, kill, or the socket closing), not die under a running batch.
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => c.Cancel = true);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => c.Cancel = true);
        using var sigquit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, c => c.Cancel = true);

        using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.IncludeScopes = false;
        }));
        var logger = loggers.CreateLogger("ServeSharp.Worker");

        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        var writer = new FrameWriter(stream);
        writer.Send(f =>
        {
            f.Begin(FrameType.Hello).String(token);
            f.Int32(Environment.ProcessId);
            return f.Finish();
        });

        var header = new byte[WorkerProtocol.HeaderSize];
        if (await WorkerProtocol.ReadAsync(stream, header, CancellationToken.None) is not (FrameType.Load, var loadPayload)) return 3;
        var load = JsonSerializer.Deserialize(new FrameReader(loadPayload).Bytes().Span, WorkerJsonContext.Default.WorkerLoad)!;
        var handler = TryLoad(load, loggers, out var error);
        writer.Send(f =>
        {
            f.Begin(FrameType.Loaded).String(error ?? "");
            return f.Finish();
        });
        if (handler is null) return 1;

        var batches = Channel.CreateBounded<(long Id, InferenceRequest[] Requests)>(1);
        var running = new BatchRunner(handler, writer, logger);
        var thread = new Thread(() => running.Run(batches.Reader)) { Name = "handler", IsBackground = true };
        thread.Start();
        try
        {
            while (await WorkerProtocol.ReadAsync(stream, header, CancellationToken.None) is var (type, payload))
            {
                switch (type)
                {
                    case FrameType.Batch:
                        await batches.Writer.WriteAsync(WorkerMessages.ReadBatch(payload));
                        break;
                    case FrameType.Cancel:
                        running.Cancel(new FrameReader(payload).Int64());
                        break;
                    case FrameType.Ping:
                        writer.Send(f => f.Begin(FrameType.Pong).Finish());
                        break;
                    case FrameType.Stop:
                        batches.Writer.TryComplete();
                        thread.Join();
                        handler.Dispose();
                        return 0;
                    default:
                        return 3;
                }
            }
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
        }
        // The server is gone: nobody waits for the handler's answer.
        return 0;
    }

    private static IModelHandler? TryLoad(WorkerLoad load, ILoggerFactory loggers, out string? error)
    {
        ModelArchive? archive = null;
        IModelHandler? handler = null;
        try
        {
            archive = ModelArchive.Open(load.ModelDirectory, Path.GetTempPath());
            var factory = new HandlerResolver(BuiltInHandlers.All, load.CompiledCache).Resolve(archive, load.Handler);
            var context = HandlerContexts.For(archive, load.SystemProperties, loggers.CreateLogger($"ServeSharp.Model.{load.ModelName}"), load.ModelName, load.ModelVersion);
            handler = factory.Create();
            handler.Initialize(context);
            error = null;
            return handler;
        }
        catch (Exception e)
        {
            handler?.Dispose();
            error = e.Message;
            return null;
        }
    }

    private static int Usage()
    {
        Console.Error.WriteLine("servesharp worker --socket PATH: started by the server for a process worker, not by hand");
        return 2;
    }

    /// <summary>Runs batches one at a time on the handler thread; a cancel from the server cancels the one running.</summary>
    private sealed partial class BatchRunner(IModelHandler handler, FrameWriter writer, ILogger logger)
    {
        private readonly object _gate = new();
        private long _current = -1;
        private CancellationTokenSource? _cancel;

        public void Cancel(long id)
        {
            lock (_gate)
            {
                if (id == _current) _cancel?.Cancel();
            }
        }

        public void Run(ChannelReader<(long Id, InferenceRequest[] Requests)> batches)
        {
            try
            {
                RunAll(batches);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                // Only a send fails this way (the handler's own exceptions are answered below): the server closed the
                // socket while a result was on its way, and the reader exits the process.
            }
        }

        private void RunAll(ChannelReader<(long Id, InferenceRequest[] Requests)> batches)
        {
            while (batches.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
            {
                if (!batches.TryRead(out var batch)) continue;
                using var cancel = new CancellationTokenSource();
                lock (_gate)
                {
                    _current = batch.Id;
                    _cancel = cancel;
                }
                IReadOnlyList<HandlerOutput>? outputs = null;
                Exception? failure = null;
                try
                {
                    outputs = handler.HandleAsync(batch.Requests, cancel.Token).GetAwaiter().GetResult();
                }
                catch (Exception e)
                {
                    failure = e; // any of the handler's exceptions, IOException included, is an answer for the server
                }
                try
                {
                    if (outputs is not null) writer.Send(f => WorkerMessages.Result(f, batch.Id, batch.Requests, outputs));
                    else if (failure is OperationCanceledException && cancel.IsCancellationRequested) writer.Send(f => WorkerMessages.WithId(f, FrameType.Cancelled, batch.Id));
                    else
                    {
                        LogBatchFailed(logger, failure!);
                        writer.Send(f => WorkerMessages.WithId(f, FrameType.BatchFailed, batch.Id, failure!.Message));
                    }
                }
                finally
                {
                    lock (_gate)
                    {
                        _current = -1;
                        _cancel = null;
                    }
                    // The bodies are in the frame now: pooled ones go back.
                    if (outputs is not null)
                    {
                        foreach (var output in outputs) output.BodyOwner?.Dispose();
                    }
                }
            }
        }

        [LoggerMessage(EventId = 7101, Level = LogLevel.Error, Message = "The handler failed a whole batch")]
        private static partial void LogBatchFailed(ILogger logger, Exception error);
    }

    /// <summary>Frames from two threads (results, pongs) go out whole, one at a time.</summary>
    private sealed class FrameWriter(Stream stream)
    {
        private readonly FrameBuilder _frame = new();

        public void Send(Func<FrameBuilder, ReadOnlyMemory<byte>> build)
        {
            lock (_frame) stream.Write(build(_frame).Span);
        }
    }
}
