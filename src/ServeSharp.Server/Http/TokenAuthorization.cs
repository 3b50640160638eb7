using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace ServeSharp.Server.Http;

/// <summary>
/// TorchServe 0.12's token authorization: at start, <c>key_file.json</c> (owner-only) holds a management key, an inference
/// key (each with an expiration time, token_expiration_min later) and an API key that never expires. Each API wants
/// <c>Authorization: Bearer &lt;key&gt;</c>; a missing, wrong or expired key is TorchServe's 400 InvalidKeyException.
/// <c>GET /token?type=management|inference</c> on the management port, with the API key, replaces that key (and its
/// expiration) in the file. Keys are compared in constant time. The file is removed when the server stops.
/// Disabled by --disable-token-auth / disable_token_authorization=true.
/// </summary>
internal sealed class TokenAuthorization
{
    private readonly TimeProvider _time;
    private readonly TimeSpan _lifetime;
    private readonly Lock _gate = new();
    private Key _management;
    private Key _inference;

    private readonly record struct Key(string Value, DateTimeOffset? Expires);

    private TokenAuthorization(string? keyFile, TimeSpan lifetime, TimeProvider time)
    {
        KeyFile = keyFile;
        _lifetime = lifetime;
        _time = time;
        ApiKey = keyFile is null ? "" : NewKey();
        _management = keyFile is null ? default : Fresh();
        _inference = keyFile is null ? default : Fresh();
    }

    public string? KeyFile { get; }
    public bool Enabled => KeyFile is not null;
    public string ApiKey { get; }

    public string ManagementKey
    {
        get
        {
            lock (_gate) return _management.Value;
        }
    }

    public string InferenceKey
    {
        get
        {
            lock (_gate) return _inference.Value;
        }
    }

    public static TokenAuthorization Disabled { get; } = new(null, TimeSpan.Zero, TimeProvider.System);

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>New random keys, written to <paramref name="keyFile"/> readable by the owner only.</summary>
    public static TokenAuthorization CreateAndWrite(string keyFile, double expirationMinutes, TimeProvider time)
    {
        var auth = new TokenAuthorization(Path.GetFullPath(keyFile), TimeSpan.FromMinutes(expirationMinutes), time);
        lock (auth._gate) auth.WriteKeyFile();
        return auth;
    }

    /// <summary>Whether the request carries the unexpired key of <paramref name="api"/>.</summary>
    public bool Allows(HttpContext http, Api api)
    {
        if (!Enabled) return true;
        Key key;
        lock (_gate) key = api is Api.Management or Api.GrpcManagement ? _management : _inference;
        return Bearer(http) is { } given && Matches(given, key.Value) && !(key.Expires <= _time.GetUtcNow());
    }

    /// <summary>The token API's route: open to the management key check, as it checks the API key itself.</summary>
    public IEnumerable<Route> Routes() => [new(Api.Management, "GET", "/token", ReplaceKeyAsync, Open: true)];

    /// <summary>TorchServe's token API: with the API key, replaces the management or inference key in the key file.</summary>
    public async Task ReplaceKeyAsync(HttpContext http)
    {
        if (!Enabled)
        {
            await Respond.Error(http, 404, "Token authorization is disabled: there are no keys to replace", "ResourceNotFoundException");
            return;
        }
        if (Bearer(http) is not { } given || !Matches(given, ApiKey))
        {
            await Respond.Error(http, 400, $"Token Authorization failed. Token either incorrect, expired, or not provided correctly: the token API wants 'Authorization: Bearer <API key>' with the API key from {KeyFile}", "InvalidKeyException");
            return;
        }
        var type = http.Request.Query["type"].ToString();
        if (type is not ("management" or "inference"))
        {
            await Respond.Error(http, 400, $"Token type '{type}' is not known: use /token?type=management or /token?type=inference", "InvalidKeyException");
            return;
        }
        DateTimeOffset? expires;
        lock (_gate)
        {
            if (type == "management") _management = Fresh();
            else _inference = Fresh();
            WriteKeyFile();
            expires = (type == "management" ? _management : _inference).Expires;
        }
        await Respond.Status(http, 200, $"The {type} key was replaced; the new key, valid until {expires:yyyy-MM-dd'T'HH:mm:ss'Z'}, is in {KeyFile}");
    }

    /// <summary>Removes the key file at stop (as TorchServe does), unless another server has written its own keys there since.</summary>
    public void RemoveKeyFile()
    {
        if (KeyFile is null) return;
        try
        {
            using var keys = JsonDocument.Parse(File.ReadAllText(KeyFile));
            if (keys.RootElement.GetProperty("API").GetProperty("key").GetString() == ApiKey) File.Delete(KeyFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or KeyNotFoundException or InvalidOperationException)
        {
            // Gone already, or not ours: nothing to remove.
        }
    }

    public Task RefuseAsync(HttpContext http, Api api) => Respond.Error(http, 400, RefusalMessage(api), "InvalidKeyException");

    /// <summary>What a refused client reads (REST's 400 body, gRPC's status detail).</summary>
    public string RefusalMessage(Api api) =>
        $"Token Authorization failed. Token either incorrect, expired, or not provided correctly: send 'Authorization: Bearer <{(api is Api.Management or Api.GrpcManagement ? "management" : "inference")} key>' with the key from {KeyFile}";

    private Key Fresh() => new(NewKey(), _time.GetUtcNow() + _lifetime);

    // TorchServe's layout and field names ("expiration time" with a space), written whole each time.
    private void WriteKeyFile()
    {
        static Dictionary<string, string> Entry(Key key) => new()
        {
            ["key"] = key.Value,
            ["expiration time"] = key.Expires!.Value.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture),
        };
        var json = JsonSerializer.Serialize(new Dictionary<string, Dictionary<string, string>>
        {
            ["management"] = Entry(_management),
            ["inference"] = Entry(_inference),
            ["API"] = new() { ["key"] = ApiKey },
        }, Indented);
        // Created owner-only before any key is in it, then replaced in one rename: no moment where others can read it.
        var temporary = KeyFile + ".tmp";
        File.Delete(temporary);
        using (var stream = OperatingSystem.IsWindows() ? File.Create(temporary)
            : new FileStream(temporary, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
        {
            stream.Write(Encoding.UTF8.GetBytes(json));
        }
        File.Move(temporary, KeyFile!, overwrite: true);
    }

    private static string? Bearer(HttpContext http)
    {
        var header = http.Request.Headers.Authorization.ToString();
        const string prefix = "Bearer ";
        return header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) ? header[prefix.Length..].Trim() : null;
    }

    private static bool Matches(string given, string expected) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(given)), SHA256.HashData(Encoding.UTF8.GetBytes(expected)));

    private static string NewKey() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(24)).Replace('+', '-').Replace('/', '_');
}
