using System.Text.Json;
using System.Text.Json.Nodes;

namespace ServeSharp.Tests.Playground;

/// <summary>One browser tab: navigate, evaluate script, wait for a DOM condition, set a file input, screenshot.</summary>
internal sealed class BrowserPage(CdpConnection connection, string targetId, string sessionId) : IAsyncDisposable
{
    /// <summary>The longest any condition may take on a loaded CI machine: a safety net, not a statement about speed.</summary>
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    /// <summary>Exceptions, console errors and CSP refusals the page reported (failed requests excluded).</summary>
    public IReadOnlyCollection<string> Problems => connection.ProblemsOf(sessionId);

    public Task<JsonElement> SendAsync(string method, JsonObject? parameters = null) => connection.SendAsync(method, parameters, sessionId);

    public async Task NavigateAsync(string url)
    {
        var navigated = await SendAsync("Page.navigate", new JsonObject { ["url"] = url });
        if (navigated.TryGetProperty("errorText", out var error)) Assert.Fail($"navigating to {url}: {error.GetString()}");
        await WaitForAsync("document.readyState === 'complete'");
    }

    /// <summary>The value of a script expression (promises awaited); a script exception fails the test.</summary>
    public async Task<JsonElement> EvaluateAsync(string expression)
    {
        var evaluated = await SendAsync("Runtime.evaluate", new JsonObject { ["expression"] = expression, ["returnByValue"] = true, ["awaitPromise"] = true });
        if (evaluated.TryGetProperty("exceptionDetails", out var exception)) Assert.Fail($"{expression} threw {exception.GetRawText()}");
        return evaluated.GetProperty("result").TryGetProperty("value", out var value) ? value.Clone() : default;
    }

    public async Task<string> TextAsync(string selector) =>
        (await EvaluateAsync($"document.querySelector({JsonSerializer.Serialize(selector)})?.textContent ?? ''")).GetString()!;

    /// <summary>Polls until the expression is truthy, at most <see cref="Patience"/>; returns its value.</summary>
    public async Task<JsonElement> WaitForAsync(string expression)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            var value = await EvaluateAsync(expression);
            if (value.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null or JsonValueKind.False) && !(value.ValueKind == JsonValueKind.String && value.GetString()!.Length == 0))
                return value;
            if (DateTime.UtcNow > deadline) break;
            await Task.Delay(50);
        }
        var state = await EvaluateAsync("JSON.stringify({state: document.body?.dataset.state, status: document.getElementById('status')?.textContent, error: document.getElementById('error')?.textContent})");
        Assert.Fail($"waited {Patience.TotalSeconds} s for {expression}; the page: {state.GetString()}; problems: {string.Join(" | ", Problems)}");
        return default;
    }

    /// <summary>Puts <paramref name="path"/> in the file input, as a user choosing it would (input and change events fire).</summary>
    public async Task SetFileAsync(string selector, string path)
    {
        var document = await SendAsync("DOM.getDocument");
        var node = await SendAsync("DOM.querySelector", new JsonObject { ["nodeId"] = document.GetProperty("root").GetProperty("nodeId").GetInt32(), ["selector"] = selector });
        await SendAsync("DOM.setFileInputFiles", new JsonObject { ["nodeId"] = node.GetProperty("nodeId").GetInt32(), ["files"] = new JsonArray(path) });
    }

    public async Task<byte[]> ScreenshotAsync()
    {
        var shot = await SendAsync("Page.captureScreenshot", new JsonObject { ["format"] = "png", ["captureBeyondViewport"] = true });
        return Convert.FromBase64String(shot.GetProperty("data").GetString()!);
    }

    public async ValueTask DisposeAsync() => await connection.SendAsync("Target.closeTarget", new JsonObject { ["targetId"] = targetId });
}
