using System.Text.Json;
using ServeSharp.Tests.Support;

namespace ServeSharp.Tests.Server;

/// <summary>
/// The management API's parameter semantics as TorchServe's (ManagementRequestHandler, NettyUtils, ApiUtils): its
/// defaults, its lenient reading of values it cannot use (the default, and here a warning in the log), and the status
/// code of each refusal — over real HTTP on a server hosted in-process.
/// </summary>
[Collection("management")]
public sealed class ManagementFidelityTests(ManagementStoreFixture store)
{
    [Fact]
    public async Task Register_is_synchronous_with_no_workers_by_default_and_scale_is_asynchronous_to_one_worker()
    {
        await using var server = await StartAsync();
        using var m = server.Management;
        Assert.Equal((200, "Model \"tiny\" Version: 1.0 registered with 0 initial workers. Use scale workers API to add workers for the model."),
            Status(await SendAsync(m, "POST", "/models?url=tiny.mar")));
        var tiny = await DescribeAsync(m, "/models/tiny");
        Assert.Equal((0, 0, 0), (tiny.GetProperty("minWorkers").GetInt32(), tiny.GetProperty("maxWorkers").GetInt32(), tiny.GetProperty("workers").GetArrayLength()));

        // Synchronous unless told otherwise: the answer comes once the worker is READY.
        Assert.Equal((200, "Model \"multi\" Version: 1.0 registered with 1 initial workers"), Status(await SendAsync(m, "POST", "/models?url=multi-v1.mar&initial_workers=1")));
        Assert.Equal("READY", (await DescribeAsync(m, "/models/multi")).GetProperty("workers")[0].GetProperty("status").GetString());
        Assert.Equal((202, "Processing worker updates..."), Status(await SendAsync(m, "POST", "/models?url=multi-v2.mar&initial_workers=1&synchronous=false")));

        // Scale: asynchronous, min_worker 1 and max_worker = min_worker when absent.
        Assert.Equal((202, "Processing worker updates..."), Status(await SendAsync(m, "PUT", "/models/tiny")));
        tiny = await DescribeAsync(m, "/models/tiny");
        Assert.Equal((1, 1), (tiny.GetProperty("minWorkers").GetInt32(), tiny.GetProperty("maxWorkers").GetInt32()));
        Assert.Equal((200, "Workers scaled to 2 for model: tiny"), Status(await SendAsync(m, "PUT", "/models/tiny?min_worker=2&max_worker=3&synchronous=TRUE")));
        tiny = await DescribeAsync(m, "/models/tiny");
        Assert.Equal((2, 3), (tiny.GetProperty("minWorkers").GetInt32(), tiny.GetProperty("maxWorkers").GetInt32()));
        Assert.Equal(2, tiny.GetProperty("workers").EnumerateArray().Count(w => w.GetProperty("status").GetString() == "READY"));
        Assert.Equal((200, "Workers scaled to 1 for model: tiny, version: 1.0"), Status(await SendAsync(m, "PUT", "/models/tiny/1.0?min_worker=1&synchronous=true")));
        Assert.Equal((200, "Workers scaled to 0 for model: tiny, version: 1.0"), Status(await SendAsync(m, "PUT", "/models/tiny?min_worker=0&model_version=1.0&synchronous=true")));
        Assert.Equal(0, (await DescribeAsync(m, "/models/tiny")).GetProperty("workers").GetArrayLength());
    }

    [Fact]
    public async Task Default_workers_per_model_set_in_config_properties_is_what_registration_starts()
    {
        await using var server = await StartAsync(properties: "default_workers_per_model=1");
        using var m = server.Management;
        Assert.Equal((200, "Model \"tiny\" Version: 1.0 registered with 1 initial workers"), Status(await SendAsync(m, "POST", "/models?url=tiny.mar")));
    }

    public static TheoryData<string, string, int, string> UnreadableRegisterParameters => new()
    {
        { "batch_size=dd", "batchSize", 1, "batch_size=dd is not an integer; using the default" },
        { "batch_size=-3", "batchSize", 1, "batch_size=-3 is out of range" },
        { "max_batch_delay=junk", "maxBatchDelay", 100, "max_batch_delay=junk is not an integer" },
        { "initial_workers=-1", "minWorkers", 0, "initial_workers=-1 is out of range" },
        { "initial_workers=2.5", "minWorkers", 0, "initial_workers=2.5 is not an integer" },
        { "response_timeout=soon", "responseTimeout", 120, "response_timeout=soon is not an integer" },
        { "startup_timeout=-5", "startupTimeout", 120, "startup_timeout=-5 is out of range" },
    };

    [Theory]
    [MemberData(nameof(UnreadableRegisterParameters))]
    public async Task A_register_parameter_that_cannot_be_used_takes_the_default_with_a_warning(string parameter, string field, int expected, string warning)
    {
        using var logs = new LogCapture();
        await using var server = await StartAsync(logs);
        using var m = server.Management;
        var (status, body) = await SendAsync(m, "POST", $"/models?url=tiny.mar&{parameter}");
        Assert.True(status == 200, body);
        Assert.Equal(expected, (await DescribeAsync(m, "/models/tiny")).GetProperty(field).GetInt32());
        Assert.Contains(logs.Lines, l => l.Contains("ServeSharp.ManagementApi", StringComparison.Ordinal) && l.Contains(warning, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Unreadable_booleans_are_false_and_unreadable_paging_and_counts_are_the_defaults_with_warnings()
    {
        using var logs = new LogCapture();
        await using var server = await StartAsync(logs);
        using var m = server.Management;
        // synchronous=-1 is false: the registration answers before its worker loads.
        Assert.Equal(202, (await SendAsync(m, "POST", "/models?url=multi-v1.mar&initial_workers=1&synchronous=-1")).Status);
        Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=tiny.mar")).Status);
        Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=gate.mar&initial_workers=0")).Status);

        foreach (var query in new[] { "limit=-1", "limit=", "limit=1000", "limit=ten&next_page_token=-1", "next_page_token=x" })
        {
            var list = JsonDocument.Parse((await SendAsync(m, "GET", $"/models?{query}")).Body).RootElement;
            Assert.Equal(["gate", "multi", "tiny"], list.GetProperty("models").EnumerateArray().Select(e => e.GetProperty("modelName").GetString()));
        }
        // TorchServe's paging: a token past the end is an empty page; a page that ends exactly at the end still names it.
        Assert.Empty(JsonDocument.Parse((await SendAsync(m, "GET", "/models?next_page_token=12")).Body).RootElement.GetProperty("models").EnumerateArray());
        var page = JsonDocument.Parse((await SendAsync(m, "GET", "/models?limit=3")).Body).RootElement;
        Assert.Equal("3", page.GetProperty("nextPageToken").GetString());

        Assert.Equal((202, "Processing worker updates..."), Status(await SendAsync(m, "PUT", "/models/tiny?min_worker=nan&synchronous=Nan")));
        Assert.Equal(1, (await DescribeAsync(m, "/models/tiny")).GetProperty("minWorkers").GetInt32());
        // TorchServe reads neither of these on scale: accepted, ignored.
        Assert.Equal(202, (await SendAsync(m, "PUT", "/models/tiny?number_gpu=-1&timeout=true")).Status);

        foreach (var warning in new[] { "synchronous=-1 is not true or false; taken as false", "limit=-1 is out of range; using 100", "limit= is not an integer",
                     "limit=1000 is out of range", "next_page_token=-1 is out of range; starting from 0", "min_worker=nan is not an integer", "synchronous=Nan is not true or false" })
            Assert.Contains(logs.Lines, l => l.Contains(warning, StringComparison.Ordinal));
    }

    public static TheoryData<string, string, int, string, string> Refusals => new()
    {
        { "POST", "/models", 400, "BadRequestException", "Parameter url is required." },
        { "POST", "/models?url=", 404, "ModelNotFoundException", "empty url" },
        { "POST", "/models?url=tiny.mar&model_name=t2&runtime=python4", 400, "BadRequestException", "Invalid RuntimeType value: python4" },
        { "POST", "/models?url=tiny.mar", 409, "ConflictStatusException", "Model version 1.0 is already registered for model tiny" },
        { "POST", "/models?url=../tiny.mar", 404, "ModelNotFoundException", "Relative path is not allowed in url: ../tiny.mar" },
        { "POST", "/models?url=nothere.mar", 404, "ModelNotFoundException", "Model not found at: nothere.mar" },
        // The archive's file is already in the model store: refused before anything is downloaded.
        { "POST", "/models?url=https://torchserve.pytorch.org/mar_files/tiny.mar&model_name=tiny", 500, "InternalServerException", "Model file already exists tiny.mar" },
        { "PUT", "/models/tiny?min_worker=2&max_worker=1", 400, "BadRequestException", "max_worker cannot be less than min_worker." },
        { "PUT", "/models/nosuch?min_worker=2&max_worker=1", 400, "BadRequestException", "max_worker cannot be less than min_worker." },
        { "PUT", "/models/tiny?max_worker=-1", 400, "BadRequestException", "max_worker cannot be less than min_worker." },
        { "PUT", "/models/tiny?min_worker=-1", 500, "InternalServerException", "min_worker must not be negative: -1" },
        { "PUT", "/models/nosuch?min_worker=1", 404, "ModelNotFoundException", "Model not found: nosuch" },
        { "PUT", "/models/tiny/0.0?min_worker=1&synchronous=true", 404, "ModelNotFoundException", "Model version 0.0 not found for model tiny" },
        { "GET", "/models/tiny/0.0", 404, "ModelNotFoundException", "Model version 0.0 not found for model tiny" },
        { "DELETE", "/models/tiny/0.0", 404, "ModelNotFoundException", "Model version 0.0 not found for model tiny" },
        { "DELETE", "/models/nosuch", 404, "ModelNotFoundException", "Model not found: nosuch" },
        { "PUT", "/models/tiny/0.0/set-default", 404, "ModelNotFoundException", "Model version 0.0 not found for model tiny" },
        { "PUT", "/models/nosuch/1.0/set-default", 404, "ModelNotFoundException", "Model not found: nosuch" },
        { "GET", "/models/tiny?customized=true", 503, "ServiceUnavailableException", "Model \"tiny\" has no worker to serve describe request. Please use scale workers API to add workers." },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task Each_refusal_has_torchserves_status_and_changes_nothing(string method, string path, int status, string type, string message)
    {
        await using var server = await StartAsync();
        using var m = server.Management;
        Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=tiny.mar")).Status);
        var (code, body) = await SendAsync(m, method, path);
        Assert.True(code == status, $"{method} {path}: {code} {body}");
        var error = JsonDocument.Parse(body).RootElement;
        Assert.Equal((status, type, message), (error.GetProperty("code").GetInt32(), error.GetProperty("type").GetString(), error.GetProperty("message").GetString()));
        var tiny = await DescribeAsync(m, "/models/tiny");
        Assert.Equal((0, 0, true), (tiny.GetProperty("minWorkers").GetInt32(), tiny.GetProperty("workers").GetArrayLength(), File.Exists(Path.Combine(store.Store, "tiny.mar"))));
    }

    [Fact]
    public async Task An_unknown_handler_registers_and_its_workers_fail_to_start_with_the_reason()
    {
        await using var server = await StartAsync();
        using var m = server.Management;
        Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=tiny.mar&model_name=mnist&handler=invalidHandler")).Status);
        Assert.Contains("(unresolved)", (await DescribeAsync(m, "/models/mnist")).GetProperty("handler").GetString());
        var (status, body) = await SendAsync(m, "PUT", "/models/mnist?min_worker=1&synchronous=true");
        Assert.Equal(500, status);
        Assert.Contains("Failed to start workers for model mnist version: 1.0", body);
        Assert.Contains("handler 'invalidHandler' is neither a built-in", body);
        Assert.Equal(200, (await SendAsync(m, "DELETE", "/models/mnist")).Status);

        Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=tiny.mar&model_name=py&handler=serve/ts/torch_handler/image_classifier.py:handle")).Status);
        (status, body) = await SendAsync(m, "PUT", "/models/py?min_worker=1&synchronous=true");
        Assert.Equal(500, status);
        Assert.Contains("is a Python handler, which ServeSharp cannot run", body);

        // Asked for workers synchronously, the registration fails as a whole and is undone.
        (status, body) = await SendAsync(m, "POST", "/models?url=tiny.mar&model_name=undone&handler=invalidHandler&initial_workers=1");
        Assert.Equal(500, status);
        Assert.Equal("InternalServerException", JsonDocument.Parse(body).RootElement.GetProperty("type").GetString());
        Assert.Equal(404, (await SendAsync(m, "GET", "/models/undone")).Status);
    }

    [Fact]
    public async Task A_zero_startup_timeout_fails_workers_but_not_a_registration_without_them()
    {
        await using var server = await StartAsync();
        using var m = server.Management;
        var (status, body) = await SendAsync(m, "POST", "/models?url=tiny.mar&batch_size=3&initial_workers=3&startup_timeout=0");
        Assert.Equal(500, status);
        Assert.Contains("Failed to start workers for model tiny version: 1.0: startupTimeout is 0s", body);
        Assert.Equal(404, (await SendAsync(m, "GET", "/models/tiny")).Status);

        Assert.Equal(200, (await SendAsync(m, "POST", "/models?url=tiny.mar&startup_timeout=0&runtime=python3")).Status);
        var tiny = await DescribeAsync(m, "/models/tiny");
        Assert.Equal((0, "python3"), (tiny.GetProperty("startupTimeout").GetInt32(), tiny.GetProperty("runtime").GetString()));
    }

    private Task<InProcessServer> StartAsync(LogCapture? logs = null, string properties = "") =>
        InProcessServer.StartAsync(store.Store, properties: properties, handlers: GateHandler.BuiltIn, loggers: logs?.Factory);

    internal static async Task<(int Status, string Body)> SendAsync(HttpClient client, string method, string path)
    {
        using var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    internal static async Task<JsonElement> DescribeAsync(HttpClient client, string path)
    {
        var (status, body) = await SendAsync(client, "GET", path);
        Assert.True(status == 200, $"GET {path}: {status} {body}");
        return JsonDocument.Parse(body).RootElement[0].Clone();
    }

    private static (int, string) Status((int Status, string Body) answer)
    {
        Assert.True(answer.Status < 300, answer.Body);
        return (answer.Status, JsonDocument.Parse(answer.Body).RootElement.GetProperty("status").GetString()!);
    }
}
