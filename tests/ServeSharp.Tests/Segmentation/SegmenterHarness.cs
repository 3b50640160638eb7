using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using ServeSharp.Archive;
using ServeSharp.Handlers;
using ServeSharp.Loader;
using ServeSharp.Sdk;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Segmentation;

/// <summary>
/// image_segmenter as the server runs it — an archive, the built-in resolved by name, Initialize, HandleAsync — without
/// HTTP, so tests can look at every output closely.
/// </summary>
internal sealed class SegmenterHarness : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ModelArchive _archive;
    private readonly HandlerFactory _factory;
    private readonly IModelHandler _handler;

    public SegmenterHarness(string onnx, string handlerYaml = "", params string[] extraFiles)
        : this(onnx, handlerYaml, new SystemProperties { IntraOpThreads = 2 }, extraFiles)
    {
    }

    /// <summary>The handler on the worker <paramref name="properties"/> describe (a GPU worker: DeviceType "gpu", GpuId).</summary>
    public SegmenterHarness(string onnx, string handlerYaml, SystemProperties properties, params string[] extraFiles)
    {
        var config = _dir.File("model-config.yaml");
        File.WriteAllText(config, "handler:\n" + (handlerYaml.Length == 0 ? "  mode: torchserve\n" : handlerYaml));
        var mar = ArchiveWriter.Write(new ArchiveSpec
        {
            ModelName = "seg", Handler = "image_segmenter", SerializedFile = onnx, ConfigFile = config,
            ExtraFiles = extraFiles, ExportPath = _dir.Path,
        });
        _archive = ModelArchive.Open(mar, _dir.Sub("extract"));
        _factory = new HandlerResolver(BuiltInHandlers.All).Resolve(_archive);
        _handler = _factory.Create();
        _handler.Initialize(HandlerContexts.For(_archive, properties, NullLogger.Instance));
    }

    /// <summary>The handler itself, for tests that look inside it.</summary>
    public IModelHandler Handler => _handler;

    public async Task<HandlerOutput[]> RunAsync(params (byte[] Image, string Query)[] requests)
    {
        var batch = requests.Select(r => InferenceRequest.FromBody(r.Image, "application/octet-stream", Query(r.Query))).ToArray();
        var outputs = await _handler.HandleAsync(batch, CancellationToken.None);
        return [.. outputs];
    }

    public async Task<HandlerOutput> RunAsync(byte[] image, string query = "") => (await RunAsync((image, query)))[0];

    /// <summary>A batch run with the worker's cancellation token.</summary>
    public Task<IReadOnlyList<HandlerOutput>> RunAsync(CancellationToken cancellationToken, params (byte[] Image, string Query)[] requests) =>
        _handler.HandleAsync([.. requests.Select(r => InferenceRequest.FromBody(r.Image, "application/octet-stream", Query(r.Query)))], cancellationToken);

    public async Task<HandlerOutput[]> RunRequestsAsync(params InferenceRequest[] requests) => [.. await _handler.HandleAsync(requests, CancellationToken.None)];

    /// <summary>TorchServe's JSON (H×W×2) → class and probability per pixel.</summary>
    public static (byte[] Classes, float[] Probs, int Width, int Height) ParseTorchServe(HandlerOutput output)
    {
        Assert.Null(output.StatusCode);
        using var doc = JsonDocument.Parse(output.Body);
        var rows = doc.RootElement;
        int h = rows.GetArrayLength(), w = rows[0].GetArrayLength();
        var classes = new byte[w * h];
        var probs = new float[w * h];
        var y = 0;
        foreach (var row in rows.EnumerateArray())
        {
            var x = 0;
            foreach (var pixel in row.EnumerateArray())
            {
                classes[y * w + x] = (byte)pixel[0].GetDouble();
                probs[y * w + x] = (float)pixel[1].GetDouble();
                x++;
            }
            y++;
        }
        return (classes, probs, w, h);
    }

    public static string Text(HandlerOutput output) => Encoding.UTF8.GetString(output.Body.Span);

    private static Dictionary<string, string> Query(string query)
    {
        var result = new Dictionary<string, string>();
        foreach (var pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=');
            result[pair[..eq]] = pair[(eq + 1)..];
        }
        return result;
    }

    public void Dispose()
    {
        _handler.Dispose();
        _factory.Dispose();
        _archive.Dispose();
        _dir.Dispose();
    }
}
