using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using ServeSharp.Sdk;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Workers;

/// <summary>What a worker process is started with, besides its handler context.</summary>
internal sealed record ProcessWorkerOptions(string WorkerName, string SocketFolder, string? Handler, string? CompiledCache, string? WorkerUser, int? MaxMemoryMB);

/// <summary>
/// A worker whose handler runs in a child process (<c>servesharp worker</c>), so that a handler which exits, overflows
/// its stack or spins forever costs that process, not the server. The server side of the socket: it starts the
/// process, checks its hello, loads the handler there, sends batches and reads results. It watches the process:
/// exit (the socket closes), heartbeats (a reader thread in the worker answers pings even while the handler computes)
/// and, if set, resident memory against maxWorkerMemoryMB.
/// </summary>
/// <param name="output">Where the process's stdout and stderr lines go: the model log (TorchServe's MODEL_LOG).</param>
internal sealed partial class ProcessBackend(ProcessWorkerOptions options, TimeProvider time, ILogger logger, ILogger output) : IWorkerBackend
{
    public static TimeSpan HeartbeatInterval { get; } = TimeSpan.FromSeconds(2);
    public static TimeSpan HeartbeatTimeout { get; } = TimeSpan.FromSeconds(20);

    private readonly object _gate = new();
    private readonly FrameBuilder _frame = new();
    private readonly TaskCompletionSource<string> _loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _stderrClosed = Task.CompletedTask;
    private Process? _process;
    private Socket? _listener;
    private NetworkStream? _stream;
    private string? _socketPath;
    private ITimer? _watch;
    private TaskCompletionSource<HandlerOutput[]>? _pending;
    private InferenceRequest[]? _pendingRequests;
    private long _batchId;
    private long _lastPong;
    private string? _killReason;
    private string? _fatalLine;
    private string? _deathReason;
    private volatile bool _stopping;
    private volatile bool _disposed;

    public int ProcessId { get; private set; }
    public Action<string>? Died { get; set; }
    public bool CanKill => true;

    public long? ResidentBytes
    {
        get
        {
            if (ProcessId == 0 || _deathReason is not null) return null;
            try
            {
                var fields = File.ReadAllText($"/proc/{ProcessId}/statm").Split(' ');
                return long.Parse(fields[1], CultureInfo.InvariantCulture) * Environment.SystemPageSize;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
            {
                return null;
            }
        }
    }

    public void Load(HandlerContext context)
    {
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("process workers need Linux (Unix domain sockets, /proc); use workerIsolation: in-process");
        var folder = options.SocketFolder;
        if (folder.Length > 64) throw new InvalidOperationException($"the worker socket folder {folder} is too long for a Unix socket path (107 bytes): set a shorter TMPDIR");
        Directory.CreateDirectory(folder);
        // A worker_user must reach the socket; nobody else needs to. Only the child we started is accepted (its pid,
        // from the kernel), and it must then show the token it was given on stdin.
        File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
        _socketPath = Path.Combine(folder, $"{Guid.NewGuid():N}.sock");
        var token = Convert.ToHexString(RandomNumberGenerator.GetBytes(32));

        using (var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            listener.Bind(new UnixDomainSocketEndPoint(_socketPath));
            File.SetUnixFileMode(_socketPath, options.WorkerUser is null ? UnixFileMode.UserRead | UnixFileMode.UserWrite : (UnixFileMode)0b110_110_110);
            listener.Listen(4);
            _listener = listener;
            StartProcess(context.ModelDirectory, token);
            if (_killReason is not null) throw new InvalidOperationException(_killReason);
            _stream = new NetworkStream(AcceptChild(listener), ownsSocket: true);
            _listener = null;
        }
        File.Delete(_socketPath);

        var header = new byte[WorkerProtocol.HeaderSize];
        var hello = WorkerProtocol.ReadAsync(_stream, header, CancellationToken.None, maxPayload: 256).GetAwaiter().GetResult();
        if (hello is not (FrameType.Hello, var payload) || !HelloMatches(payload, token))
            throw new InvalidOperationException("the worker process did not identify itself with its start token");
        _ = Task.Run(() => ReadLoopAsync(header), CancellationToken.None);

        var load = new WorkerLoad(context.ModelDirectory, context.ModelName, context.ModelVersion, options.Handler, options.CompiledCache, context.SystemProperties);
        Send(f =>
        {
            f.Begin(FrameType.Load).Bytes(JsonSerializer.SerializeToUtf8Bytes(load, WorkerJsonContext.Default.WorkerLoad));
            return f.Finish();
        });
        var error = _loaded.Task.GetAwaiter().GetResult();
        if (error.Length > 0) throw new InvalidOperationException(error);
        _lastPong = time.GetTimestamp();
        _watch = time.CreateTimer(_ => Watch(), null, HeartbeatInterval, HeartbeatInterval);
    }

    // Connections from anyone but our child (another local user racing it) are closed; Kill (startupTimeout, unregister)
    // disposes the listener, which ends this wait, as does the child's exit.
    private Socket AcceptChild(Socket listener)
    {
        var exited = _process!.WaitForExitAsync();
        while (true)
        {
            var accept = listener.AcceptAsync();
            Task.WhenAny(accept, exited).GetAwaiter().GetResult();
            if (!accept.IsCompletedSuccessfully)
            {
                _ = accept.ContinueWith(t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
                throw new InvalidOperationException(_killReason ?? $"{ExitDescription()} before it connected");
            }
            var connection = accept.Result;
            if (PeerPid(connection) == ProcessId) return connection;
            connection.Dispose();
        }
    }

    // SO_PEERCRED (SOL_SOCKET 1, option 17): struct ucred { pid_t pid; uid_t uid; gid_t gid; }, filled in by the kernel.
    private static int PeerPid(Socket connection)
    {
        Span<byte> credentials = stackalloc byte[12];
        return connection.GetRawSocketOption(1, 17, credentials) >= 4 ? System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(credentials) : -1;
    }

    private void StartProcess(string modelDirectory, string token)
    {
        _process = new Process { StartInfo = WorkerProcessLauncher.StartInfo(_socketPath!, modelDirectory, options.WorkerUser) };
        _process.Start();
        ProcessId = _process.Id;
        _ = CappedLines.ReadAsync(_process.StandardOutput.BaseStream, line => LogOutput(output, options.WorkerName, line));
        _stderrClosed = CappedLines.ReadAsync(_process.StandardError.BaseStream, line =>
        {
            if (_fatalLine is null && (line.StartsWith("Stack overflow", StringComparison.Ordinal) || line.StartsWith("Unhandled exception", StringComparison.Ordinal)
                || line.StartsWith("Fatal error", StringComparison.Ordinal) || line.StartsWith("Out of memory", StringComparison.Ordinal)))
                _fatalLine = line.Trim();
            LogError(output, options.WorkerName, line);
        });
        _process.StandardInput.WriteLine(token);
        _process.StandardInput.Close();
    }

    private bool HelloMatches(byte[] payload, string token)
    {
        try
        {
            var reader = new FrameReader(payload);
            var sent = reader.String() ?? "";
            var pid = reader.Int32();
            return CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(sent), Encoding.ASCII.GetBytes(token)) && pid == ProcessId;
        }
        catch (InvalidDataException)
        {
            return false;
        }
    }

    public IReadOnlyList<HandlerOutput> Run(InferenceRequest[] batch, CancellationToken cancellationToken)
    {
        var pending = new TaskCompletionSource<HandlerOutput[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        long id;
        lock (_gate)
        {
            if (_deathReason is { } dead) throw new WorkerDiedException(dead);
            id = ++_batchId;
            _pending = pending;
            _pendingRequests = batch;
        }
        try
        {
            TrySend(f => WorkerMessages.Batch(f, id, batch)); // a dead process is reported by the read loop, through pending
            using var cancel = cancellationToken.UnsafeRegister(_ => TrySend(f => WorkerMessages.WithId(f, FrameType.Cancel, id)), null);
            return pending.Task.GetAwaiter().GetResult();
        }
        finally
        {
            lock (_gate)
            {
                _pending = null;
                _pendingRequests = null;
            }
        }
    }

    private async Task ReadLoopAsync(byte[] header)
    {
        string? problem = null;
        try
        {
            while (await WorkerProtocol.ReadAsync(_stream!, header, CancellationToken.None) is var (type, payload))
                Handle(type, payload);
        }
        catch (InvalidDataException e)
        {
            problem = $"the worker process broke the protocol ({e.Message}) and was killed";
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
        {
        }
        catch (Exception e)
        {
            // Anything else (a frame too large to allocate, a bug here) must still release every waiter.
            problem = $"reading from the worker process failed ({e.GetType().Name}: {e.Message}); it was killed";
        }
        Ended(problem);
    }

    private void Handle(FrameType type, byte[] payload)
    {
        switch (type)
        {
            case FrameType.Loaded:
                _loaded.TrySetResult(new FrameReader(payload).String() ?? "");
                break;
            case FrameType.Pong:
                Volatile.Write(ref _lastPong, time.GetTimestamp());
                break;
            case FrameType.Result:
                lock (_gate)
                {
                    // Only the batch in hand may touch its requests' response settings.
                    if (payload.Length < 8 || System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(payload) != _batchId || _pending is null) break;
                    var (id, outputs) = WorkerMessages.ReadResult(payload, _pendingRequests);
                    if (id == _batchId && outputs.Length == _pendingRequests?.Length) _pending?.TrySetResult(outputs);
                    else if (id == _batchId) _pending?.TrySetException(new InvalidOperationException($"the handler returned {outputs.Length} responses for a batch of {_pendingRequests?.Length}"));
                }
                break;
            case FrameType.BatchFailed:
            case FrameType.Cancelled:
                var reader = new FrameReader(payload);
                var failed = reader.Int64();
                Exception error = type == FrameType.Cancelled ? new OperationCanceledException() : new InvalidOperationException(reader.String());
                lock (_gate)
                {
                    if (failed == _batchId) _pending?.TrySetException(error);
                }
                break;
            default:
                throw new InvalidDataException($"unexpected frame {type}");
        }
    }

    // The socket closed: the process exited or was killed. Every waiter learns why.
    private void Ended(string? problem)
    {
        if (problem is not null) TryKill();
        _watch?.Dispose();
        var reason = _killReason ?? problem;
        try
        {
            // Wait for the exit code, and for stderr to drain: a stack overflow's last words come after the socket closed.
            if (!_disposed && _process!.WaitForExit(TimeSpan.FromSeconds(5))) _stderrClosed.Wait(TimeSpan.FromSeconds(2));
        }
        catch (Exception e) when (e is InvalidOperationException or SystemException)
        {
        }
        reason ??= ExitDescription();
        lock (_gate)
        {
            _deathReason = reason;
            _pending?.TrySetException(new WorkerDiedException(reason));
        }
        _loaded.TrySetException(new InvalidOperationException($"{reason} before it loaded"));
        if (!_stopping) Died?.Invoke(reason);
    }

    private string ExitDescription()
    {
        var fatal = _fatalLine is { } f ? $" ({f})" : "";
        try
        {
            if (_process is null || !_process.HasExited) return "the worker process closed its connection" + fatal;
            var code = _process.ExitCode;
            return code is > 128 and < 160
                ? $"the worker process was killed by signal {code - 128}{SignalName(code - 128)}{fatal}"
                : $"the worker process exited with code {code}{fatal}";
        }
        catch (InvalidOperationException)
        {
            return "the worker process is gone" + fatal;
        }
    }

    private static string SignalName(int signal) => signal switch
    {
        6 => " (SIGABRT: the runtime aborted, as on a stack overflow)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    };

    private void Watch()
    {
        if (_deathReason is not null) return;
        var silent = time.GetElapsedTime(Volatile.Read(ref _lastPong));
        if (silent > HeartbeatTimeout)
        {
            Kill($"the worker process answered no heartbeat for {silent.TotalSeconds:0}s and was killed");
            return;
        }
        if (options.MaxMemoryMB is { } limit && ResidentBytes is { } rss && rss > limit * 1024L * 1024)
        {
            var reason = $"the worker process's resident memory ({rss / (1024 * 1024)} MB) passed maxWorkerMemoryMB ({limit}); it was killed";
            LogMemory(logger, options.WorkerName, reason);
            Kill(reason);
            return;
        }
        // A child that stopped reading would block the write: skip the ping rather than park a timer thread on it
        // (its silence still counts against the heartbeat).
        if (!Monitor.TryEnter(_frame)) return;
        try
        {
            TrySend(f => f.Begin(FrameType.Ping).Finish());
        }
        finally
        {
            Monitor.Exit(_frame);
        }
    }

    public void Kill(string reason)
    {
        Interlocked.CompareExchange(ref _killReason, reason, null);
        TryKill();
        _listener?.Dispose(); // a load still waiting for the child's connection ends now
    }

    private void TryKill()
    {
        try
        {
            if (_process is { HasExited: false } p) p.Kill(entireProcessTree: true);
        }
        catch (Exception e) when (e is InvalidOperationException or SystemException)
        {
        }
    }

    public void Stop(TimeSpan grace)
    {
        _stopping = true;
        if (_process is null || _deathReason is not null) return;
        TrySend(f => f.Begin(FrameType.Stop).Finish());
        try
        {
            if (!_process.WaitForExit(grace)) TryKill();
        }
        catch (InvalidOperationException)
        {
        }
    }

    private void Send(Func<FrameBuilder, ReadOnlyMemory<byte>> build)
    {
        if (_stream is not { } stream) return;
        lock (_frame) stream.Write(build(_frame).Span);
    }

    // Writes that may meet a dead process: its death is reported by the read loop.
    private void TrySend(Func<FrameBuilder, ReadOnlyMemory<byte>> build)
    {
        try
        {
            Send(build);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
        {
        }
    }

    public void Dispose()
    {
        _stopping = true;
        _watch?.Dispose();
        TryKill();
        _disposed = true;
        _stream?.Dispose();
        _process?.Dispose();
        if (_socketPath is not null && File.Exists(_socketPath)) File.Delete(_socketPath);
    }

    [LoggerMessage(EventId = 7001, Level = LogLevel.Information, Message = "{Worker}: {Line}")]
    private static partial void LogOutput(ILogger logger, string worker, string line);

    [LoggerMessage(EventId = 7002, Level = LogLevel.Warning, Message = "{Worker} stderr: {Line}")]
    private static partial void LogError(ILogger logger, string worker, string line);

    [LoggerMessage(EventId = 7003, Level = LogLevel.Warning, Message = "{Worker}: {Reason}")]
    private static partial void LogMemory(ILogger logger, string worker, string reason);
}
