using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ServeSharp.Tests.Playground;

/// <summary>
/// The Chrome DevTools protocol over one WebSocket: commands are JSON messages with an id, answered by a message with
/// the same id; everything else is an event. Pages are reached through flattened sessions (a <c>sessionId</c> on each
/// message), so one connection drives the browser and all its tabs. Errors the pages report (exceptions, console
/// errors, CSP refusals) are kept per session for the tests to assert on.
/// </summary>
internal sealed class CdpConnection : IAsyncDisposable
{
    private readonly ClientWebSocket _socket = new();
    private readonly ConcurrentDictionary<int, TaskCompletionSource<JsonElement>> _pending = new();
    private readonly ConcurrentDictionary<string, ConcurrentQueue<string>> _problems = new();
    private readonly SemaphoreSlim _sending = new(1, 1);
    private readonly CancellationTokenSource _closing = new();
    private Task _reader = Task.CompletedTask;
    private int _nextId;

    public static async Task<CdpConnection> ConnectAsync(Uri endpoint, CancellationToken cancellationToken)
    {
        var connection = new CdpConnection();
        connection._socket.Options.KeepAliveInterval = TimeSpan.Zero;
        await connection._socket.ConnectAsync(endpoint, cancellationToken);
        connection._reader = Task.Run(connection.ReadAsync, CancellationToken.None);
        return connection;
    }

    /// <summary>Sends a command and returns its <c>result</c>; a protocol error fails the test with its message.</summary>
    public async Task<JsonElement> SendAsync(string method, JsonObject? parameters = null, string? sessionId = null, CancellationToken cancellationToken = default)
    {
        var id = Interlocked.Increment(ref _nextId);
        var message = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters ?? [] };
        if (sessionId is not null) message["sessionId"] = sessionId;
        var answer = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = answer;
        await _sending.WaitAsync(cancellationToken);
        try
        {
            await _socket.SendAsync(Encoding.UTF8.GetBytes(message.ToJsonString()), WebSocketMessageType.Text, endOfMessage: true, cancellationToken);
        }
        finally
        {
            _sending.Release();
        }
        return await answer.Task.WaitAsync(cancellationToken);
    }

    /// <summary>What the page of <paramref name="sessionId"/> reported as an error so far.</summary>
    public IReadOnlyCollection<string> ProblemsOf(string sessionId) => _problems.GetOrAdd(sessionId, _ => new());

    private async Task ReadAsync()
    {
        var buffer = new byte[64 * 1024];
        using var message = new MemoryStream();
        try
        {
            while (!_closing.IsCancellationRequested)
            {
                var received = await _socket.ReceiveAsync(buffer, _closing.Token);
                if (received.MessageType == WebSocketMessageType.Close) break;
                message.Write(buffer, 0, received.Count);
                if (!received.EndOfMessage) continue;
                Dispatch(JsonDocument.Parse(message.ToArray()).RootElement.Clone());
                message.SetLength(0);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or WebSocketException)
        {
            // Closing, or the browser went away: whatever still waits is failed below.
        }
        foreach (var waiting in _pending.Values) waiting.TrySetException(new InvalidOperationException("the DevTools connection closed"));
    }

    private void Dispatch(JsonElement message)
    {
        if (message.TryGetProperty("id", out var id))
        {
            if (!_pending.TryRemove(id.GetInt32(), out var waiting)) return;
            if (message.TryGetProperty("error", out var error)) waiting.TrySetException(new InvalidOperationException($"DevTools: {error.GetRawText()}"));
            else waiting.TrySetResult(message.GetProperty("result"));
            return;
        }
        if (!message.TryGetProperty("sessionId", out var session) || !message.TryGetProperty("params", out var p)) return;
        var problem = message.GetProperty("method").GetString() switch
        {
            "Runtime.exceptionThrown" => "exception: " + p.GetProperty("exceptionDetails").GetRawText(),
            "Runtime.consoleAPICalled" when p.GetProperty("type").GetString() == "error" => "console.error: " + p.GetProperty("args").GetRawText(),
            // Failed requests are logged by the browser with source "network": the tests provoke some on purpose.
            "Log.entryAdded" when p.GetProperty("entry") is var entry && entry.GetProperty("level").GetString() == "error"
                && entry.GetProperty("source").GetString() != "network" => $"{entry.GetProperty("source").GetString()}: {entry.GetProperty("text").GetString()}",
            _ => null,
        };
        if (problem is not null) _problems.GetOrAdd(session.GetString()!, _ => new()).Enqueue(problem);
    }

    public async ValueTask DisposeAsync()
    {
        await _closing.CancelAsync();
        await _reader;
        _socket.Dispose();
        _closing.Dispose();
        _sending.Dispose();
    }
}
