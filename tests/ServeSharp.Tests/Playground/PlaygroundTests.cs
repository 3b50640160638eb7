using System.Globalization;
using System.Net;
using System.Text.Json;
using ServeSharp.Tests.Server;
using ServeSharp.Tests.Support;
using SkiaSharp;

namespace ServeSharp.Tests.Playground;

/// <summary>
/// The playground page in real headless Chromium against the real host: it lists the models through the inference
/// API, an image chosen in the file input comes back as the server's own PNG over it with the legend of the summary,
/// the server's errors reach the page, and with enable_playground off the paths answer TorchServe's 404.
/// </summary>
[Collection("playground")]
public sealed class PlaygroundTests(PlaygroundFixture fixture)
{
    private const string On = "enable_playground=true";

    [Fact]
    public async Task A_photograph_comes_back_as_the_servers_overlay_over_it_with_the_legend_of_its_classes()
    {
        await using var server = await InProcessServer.StartAsync(fixture.Store, ["seg=seg.mar"], On);
        await server.WaitReadyAsync("seg");
        await using var page = await OpenAsync(server.InferenceUrl);
        Assert.Equal(["seg"], await ModelsAsync(page));

        var photo = PlaygroundFixture.Photo("chelsea.png");
        Assert.Equal("done", await UploadAsync(page, photo));

        // The page shows the server's overlay pixel for pixel, and that is not the photograph.
        using var http = server.Inference;
        var overlay = Rgba(await PostAsync(http, "/predictions/seg?output=overlay&alpha=0.5", photo));
        var shown = await CanvasAsync(page);
        Assert.Equal((overlay.Width, overlay.Height), (shown.Width, shown.Height));
        Assert.True(overlay.Pixels.AsSpan().SequenceEqual(shown.Pixels), "the canvas is not the server's overlay");
        var input = Rgba(await File.ReadAllBytesAsync(photo));
        var changed = Enumerable.Range(0, input.Width * input.Height).Count(i => !input.Pixels.AsSpan(i * 4, 3).SequenceEqual(shown.Pixels.AsSpan(i * 4, 3)));
        Assert.True(changed > input.Width * input.Height / 20, $"only {changed} pixels of the overlay differ from the photograph");

        // The legend is the summary's: names from index_to_name.json, the palette's colours, areas, largest first.
        using var summary = JsonDocument.Parse(await PostAsync(http, "/predictions/seg?output=summary", photo));
        var expected = summary.RootElement.GetProperty("classes").EnumerateArray().OrderByDescending(c => c.GetProperty("pixels").GetInt32())
            .Select(c => (
                Name: $"{c.GetProperty("name").GetString()} ({c.GetProperty("index").GetInt32()})",
                Area: (c.GetProperty("fraction").GetDouble() * 100).ToString("F2", CultureInfo.InvariantCulture) + " %",
                Colour: $"rgb({string.Join(", ", c.GetProperty("color").EnumerateArray().Select(v => v.GetInt32()))})"))
            .ToList();
        Assert.True(expected.Count >= 2, "the photograph should show several classes");
        var legend = await page.EvaluateAsync("""
            [...document.querySelectorAll('#legend tbody tr.class')].map(r =>
                [r.querySelector('.name').textContent, r.children[2].textContent, getComputedStyle(r.querySelector('.swatch')).backgroundColor])
            """);
        Assert.Equal(expected, legend.EnumerateArray().Select(r => (r[0].GetString()!, r[1].GetString()!, r[2].GetString()!)));
        Assert.All(expected, c => Assert.Contains(c.Name.Split(' ')[0], PlaygroundFixture.ClassNames));

        Assert.Matches(@"^overlay: \d+ ms · summary: \d+ ms", await page.TextAsync("#latency"));
        Assert.Contains("/predictions/seg?output=overlay&alpha=0.5", await page.TextAsync("#curl"));
        Assert.Empty(page.Problems);
    }

    [Theory]
    [InlineData("color", "scales=0.5,1&flip=true")]
    [InlineData("mask", "crop_size=96&stride=64")]
    public async Task The_output_choice_and_the_tta_and_window_fields_become_the_handlers_query(string output, string options)
    {
        await using var server = await InProcessServer.StartAsync(fixture.Store, ["seg=seg.mar"], On);
        await server.WaitReadyAsync("seg");
        await using var page = await OpenAsync(server.InferenceUrl);
        var fields = System.Web.HttpUtility.ParseQueryString(options);
        await page.EvaluateAsync($$"""
            document.querySelector('input[name="output"][value="{{output}}"]').checked = true;
            document.getElementById('scales').value = '{{fields["scales"]}}';
            document.getElementById('flip').checked = {{(fields["flip"] == "true" ? "true" : "false")}};
            document.getElementById('crop').value = '{{fields["crop_size"]}}';
            document.getElementById('stride').value = '{{fields["stride"]}}';
            """);
        var photo = PlaygroundFixture.Photo("coffee.png");
        Assert.Equal("done", await UploadAsync(page, photo));

        using var http = server.Inference;
        var answer = Rgba(await PostAsync(http, $"/predictions/seg?output={output}&{options}", photo));
        if (output == "mask")
        {
            // Class indices are brightened for the eye by one gain; 255 (not predicted) stays white.
            var gain = 200 / Enumerable.Range(0, answer.Width * answer.Height).Select(i => answer.Pixels[i * 4]).Where(v => v != 255).Append((byte)1).Max(v => (int)v);
            for (var i = 0; i < answer.Pixels.Length; i++)
            {
                if (i % 4 != 3 && answer.Pixels[i - i % 4] != 255) answer.Pixels[i] = (byte)(answer.Pixels[i] * gain);
            }
        }
        var shown = await CanvasAsync(page);
        Assert.True(answer.Pixels.AsSpan().SequenceEqual(shown.Pixels), $"the canvas is not the server's {output} answer to {options}");
        Assert.Contains($"/predictions/seg?output={output}&{options.Replace(",", "%2C", StringComparison.Ordinal)}", await page.TextAsync("#curl"));
        Assert.Empty(page.Problems);
    }

    [Fact]
    public async Task A_file_that_is_no_image_shows_the_servers_message()
    {
        await using var server = await InProcessServer.StartAsync(fixture.Store, ["seg=seg.mar"], On);
        await server.WaitReadyAsync("seg");
        await using var page = await OpenAsync(server.InferenceUrl);
        var notes = Path.Combine(fixture.NewDir(), "notes.png");
        await File.WriteAllTextAsync(notes, "these are notes, not a picture");

        using var http = server.Inference;
        using var refused = await http.PostAsync("/predictions/seg?output=overlay", new ByteArrayContent(await File.ReadAllBytesAsync(notes)));
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        var message = JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("message").GetString()!;
        Assert.Contains("not a decodable image", message);

        Assert.Equal("error", await UploadAsync(page, notes));
        Assert.Contains(message, await page.TextAsync("#error"));
        Assert.StartsWith("400", await page.TextAsync("#error"));
    }

    [Fact]
    public async Task A_full_queue_and_a_model_unregistered_meanwhile_show_the_servers_messages()
    {
        await using var server = await InProcessServer.StartAsync(fixture.Store, ["seg=seg.mar", "gate=gate.mar"], $"{On}\njob_queue_size=1", handlers: GateHandler.BuiltIn);
        await server.WaitReadyAsync("seg");
        await server.WaitReadyAsync("gate");
        await using var page = await OpenAsync(server.InferenceUrl);
        Assert.Equal(["gate", "seg"], await ModelsAsync(page));

        // gate's one worker holds a request and its queue of one holds another: the page's request is one too many.
        using var http = server.Inference;
        using var management = server.Management;
        var key = Guid.NewGuid().ToString("N");
        var busy = http.PostAsync($"/predictions/gate?block={key}", new StringContent("busy"));
        await GateHandler.Entered(key).WaitAsync(BrowserPage.Patience);
        var queued = http.PostAsync($"/predictions/gate?block={key}", new StringContent("queued"));
        await WaitForAsync(async () => (await WorkerCoreTests.DescribeAsync(management, "gate")).GetProperty("jobQueueStatus").GetProperty("pendingRequests").GetInt32() == 1);
        await page.EvaluateAsync("document.getElementById('model').value = 'gate'");
        Assert.Equal("error", await UploadAsync(page, PlaygroundFixture.Photo("chelsea.png")));
        var error = await page.TextAsync("#error");
        Assert.StartsWith("503 ServiceUnavailableException", error);
        Assert.Contains("the job queue is full", error);
        GateHandler.Gate(key).TrySetResult();
        Assert.All(await Task.WhenAll(busy, queued).WaitAsync(BrowserPage.Patience), r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));

        // seg is still in the page's list after it is unregistered: the request answers 404, and the page says so.
        Assert.Equal(HttpStatusCode.OK, (await management.DeleteAsync("/models/seg")).StatusCode);
        await page.EvaluateAsync("document.getElementById('model').value = 'seg'");
        Assert.Equal("error", await RunAsync(page));
        Assert.Contains("404 ModelNotFoundException: Model not found: seg", await page.TextAsync("#error"));
    }

    [Fact]
    public async Task With_token_authorization_the_page_loads_without_a_key_and_its_api_calls_carry_the_typed_one()
    {
        await using var server = ServerProcess.Start(fixture.NewDir(), fixture.Store, ["--models", "seg=seg.mar", "--ncs"], On);
        await server.WaitHealthyAsync();
        Assert.NotNull(server.InferenceKey);
        Assert.Equal(200, ServerProcess.Curl($"{server.InferenceUrl}/").Status);

        await using var page = await OpenAsync(new Uri(server.InferenceUrl));
        Assert.Equal("error", (await page.EvaluateAsync("document.body.dataset.state")).GetString());
        var refused = await page.TextAsync("#error");
        Assert.Contains("Token Authorization failed", refused);
        Assert.EndsWith("Type the inference key above.", refused);

        await page.EvaluateAsync($"const t = document.getElementById('token'); t.value = '{server.InferenceKey}'; t.dispatchEvent(new Event('change'))");
        await page.WaitForAsync("document.body.dataset.state === 'ready'");
        Assert.Equal(["seg"], await ModelsAsync(page));
        Assert.Equal("done", await UploadAsync(page, PlaygroundFixture.Photo("chelsea.png")));
        // The curl line names the key's variable, never the key.
        var curl = await page.TextAsync("#curl");
        Assert.Contains("Authorization: Bearer $INFERENCE_KEY", curl);
        Assert.DoesNotContain(server.InferenceKey!, curl);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_paths_serve_the_page_only_when_enabled_and_options_slash_still_describes_the_api(bool enabled)
    {
        await using var server = await InProcessServer.StartAsync(fixture.Store, [], enabled ? On : "");
        var url = server.InferenceUrl.ToString().TrimEnd('/');
        foreach (var path in (string[])["/", "/playground", "/playground/playground.js", "/playground/playground.css"])
        {
            var (status, body) = ServerProcess.Curl($"{url}{path}");
            if (!enabled)
            {
                Assert.True(status == 404, $"GET {path}: {status} {body}");
                var error = JsonDocument.Parse(body).RootElement;
                Assert.Equal(404, error.GetProperty("code").GetInt32());
                Assert.Equal("ResourceNotFoundException", error.GetProperty("type").GetString());
                Assert.Contains($"GET {path}", error.GetProperty("message").GetString());
                continue;
            }
            Assert.True(status == 200, $"GET {path}: {status}");
            if (path is "/" or "/playground")
            {
                // Everything the page runs comes from its own files: no inline script, handler attribute or style.
                Assert.Contains("<script src=\"playground/playground.js\" defer></script>", body);
                Assert.DoesNotMatch(@"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", body);
            }
        }
        var (described, description) = ServerProcess.Curl("-X", "OPTIONS", $"{url}/");
        Assert.Equal(200, described);
        Assert.Equal("ServeSharp inference API", JsonDocument.Parse(description).RootElement.GetProperty("info").GetProperty("title").GetString());
        if (!enabled) return;

        var headers = ServerProcess.Curl("-s", "-D", "-", "-o", "/dev/null", $"{url}/playground").Body;
        Assert.Contains("Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'", headers);
        Assert.Contains("Content-Type: text/html; charset=utf-8", headers);
        var etag = headers.Split('\n').Single(l => l.StartsWith("ETag:", StringComparison.OrdinalIgnoreCase))[5..].Trim();
        Assert.Equal(304, ServerProcess.Curl("-H", $"If-None-Match: {etag}", $"{url}/playground").Status);
        // With a trailing slash the page's relative links would miss: the browser is sent to the slashless path.
        var (redirected, sent) = ServerProcess.Curl("-D", "-", "-o", "/dev/null", $"{url}/playground/?x=1");
        Assert.Equal(301, redirected);
        var location = sent.Split('\n').Single(l => l.StartsWith("Location:", StringComparison.OrdinalIgnoreCase))[9..].Trim();
        Assert.Equal(new Uri($"{url}/playground?x=1"), new Uri(new Uri($"{url}/playground/?x=1"), location));
    }

    [Fact]
    public async Task The_page_works_under_a_policy_that_refuses_inline_script_and_style()
    {
        await using var server = await InProcessServer.StartAsync(fixture.Store, ["seg=seg.mar"], On);
        await using var page = await OpenAsync(server.InferenceUrl);
        Assert.Equal("ready", (await page.EvaluateAsync("document.body.dataset.state")).GetString());
        Assert.Empty(page.Problems);

        var ran = await page.EvaluateAsync("""
            (() => {
                const script = document.createElement('script');
                script.textContent = 'window.inlineRan = true';
                document.head.append(script);
                const probe = document.createElement('p');
                probe.setAttribute('style', 'outline-color: rgb(1, 2, 3)');
                document.body.append(probe);
                return [window.inlineRan === true, getComputedStyle(probe).outlineColor === 'rgb(1, 2, 3)'];
            })()
            """);
        Assert.Equal([false, false], ran.EnumerateArray().Select(v => v.GetBoolean()));
        await WaitForAsync(() => Task.FromResult(page.Problems.Count(p => p.Contains("Content Security Policy", StringComparison.Ordinal)) >= 2));
    }

    [Fact]
    public async Task The_demo_model_on_a_photograph_names_its_street_classes()
    {
        await using var server = await InProcessServer.StartAsync(Path.Combine(Repo.Root, "model-store"), ["deeplab=deeplab.mar"], On);
        await server.WaitReadyAsync("deeplab");
        await using var page = await OpenAsync(server.InferenceUrl);
        await page.SendAsync("Emulation.setDeviceMetricsOverride", new() { ["width"] = 1180, ["height"] = 1100, ["deviceScaleFactor"] = 1, ["mobile"] = false });
        await page.SendAsync("Emulation.setScrollbarsHidden", new() { ["hidden"] = true });
        Assert.Equal("done", await UploadAsync(page, PlaygroundFixture.Photo("chelsea.png")));
        var names = await page.EvaluateAsync("[...document.querySelectorAll('#legend tbody tr.class .name')].map(n => n.textContent.split(' ')[0])");
        Assert.NotEmpty(names.EnumerateArray());
        Assert.All(names.EnumerateArray(), n => Assert.Contains(n.GetString(), new[] { "sky", "road", "building", "vegetation", "vehicle", "person" }));

        // The README's screenshot: SERVESHARP_PLAYGROUND_SCREENSHOT=docs/playground.png writes it there.
        var shot = await page.ScreenshotAsync();
        using (var decoded = SKBitmap.Decode(shot)) Assert.Equal(1180, decoded.Width);
        if (Environment.GetEnvironmentVariable("SERVESHARP_PLAYGROUND_SCREENSHOT") is { Length: > 0 } target) await File.WriteAllBytesAsync(target, shot);
        Assert.Empty(page.Problems);
    }

    // A fresh tab on the page, once its model list has been asked for.
    private async Task<BrowserPage> OpenAsync(Uri inference)
    {
        var page = await fixture.Browser.NewPageAsync();
        await page.NavigateAsync(inference.ToString());
        await page.WaitForAsync("['ready', 'error'].includes(document.body.dataset.state)");
        return page;
    }

    private static async Task<string[]> ModelsAsync(BrowserPage page) =>
        [.. (await page.EvaluateAsync("[...document.getElementById('model').options].map(o => o.value)")).EnumerateArray().Select(v => v.GetString()!)];

    // The state is set to a mark only the test uses, so the wait ends on this run's outcome, never on an earlier one.
    private static async Task<string> UploadAsync(BrowserPage page, string file)
    {
        await page.EvaluateAsync("document.body.dataset.state = 'test-waiting'");
        await page.SetFileAsync("#file", file);
        return await OutcomeAsync(page);
    }

    private static async Task<string> RunAsync(BrowserPage page)
    {
        await page.EvaluateAsync("document.body.dataset.state = 'test-waiting'; document.getElementById('run').click()");
        return await OutcomeAsync(page);
    }

    private static async Task<string> OutcomeAsync(BrowserPage page) =>
        (await page.WaitForAsync("['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state")).GetString()!;

    private static async Task<(int Width, int Height, byte[] Pixels)> CanvasAsync(BrowserPage page)
    {
        var url = (await page.EvaluateAsync("document.getElementById('result').toDataURL('image/png')")).GetString()!;
        return Rgba(Convert.FromBase64String(url[(url.IndexOf(',', StringComparison.Ordinal) + 1)..]));
    }

    private static (int Width, int Height, byte[] Pixels) Rgba(byte[] encoded)
    {
        using var decoded = SKBitmap.Decode(encoded);
        using var rgba = decoded.Copy(SKColorType.Rgba8888);
        return (rgba.Width, rgba.Height, rgba.GetPixelSpan().ToArray());
    }

    private static async Task<byte[]> PostAsync(HttpClient http, string path, string file)
    {
        using var response = await http.PostAsync(path, new ByteArrayContent(await File.ReadAllBytesAsync(file)));
        var body = await response.Content.ReadAsByteArrayAsync();
        Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode} {System.Text.Encoding.UTF8.GetString(body)}");
        return body;
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + BrowserPage.Patience;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not reached");
            await Task.Delay(25);
        }
    }
}
