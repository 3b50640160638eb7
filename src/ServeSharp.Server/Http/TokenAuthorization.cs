using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace ServeSharp.Server.Http;

/// <summary>
/// TorchServe 0.11+'s token authorization: at start, a management key and an inference key are written to
/// <c>key_file.json</c>; each API then wants <c>Authorization: Bearer &lt;key&gt;</c>. Keys are compared in
/// constant time. Disabled by --disable-token-auth / disable_token_authorization=true.
/// </summary>
internal sealed class TokenAuthorization
{
    private TokenAuthorization(string management, string inference, string? keyFile)
    {
        ManagementKey = management;
        InferenceKey = inference;
        KeyFile = keyFile;
    }

    public string ManagementKey { get; }
    public string InferenceKey { get; }
    public string? KeyFile { get; }
    public bool Enabled => KeyFile is not null;

    public static TokenAuthorization Disabled { get; } = new("", "", null);

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>New random keys, written to <paramref name="keyFile"/> readable by the owner only.</summary>
    public static TokenAuthorization CreateAndWrite(string keyFile)
    {
        var auth = new TokenAuthorization(NewKey(), NewKey(), Path.GetFullPath(keyFile));
        var json = JsonSerializer.Serialize(new Dictionary<string, Dictionary<string, string>>
        {
            ["management"] = new() { ["key"] = auth.ManagementKey },
            ["inference"] = new() { ["key"] = auth.InferenceKey },
        }, Indented);
        File.WriteAllText(keyFile, json);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(keyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return auth;
    }

    /// <summary>Whether the request carries the key of <paramref name="api"/>.</summary>
    public bool Allows(HttpContext http, Api api)
    {
        if (!Enabled) return true;
        var header = http.Request.Headers.Authorization.ToString();
        const string prefix = "Bearer ";
        return header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) && Matches(header[prefix.Length..].Trim(), api is Api.Management or Api.GrpcManagement ? ManagementKey : InferenceKey);
    }

    public Task RefuseAsync(HttpContext http, Api api) => Respond.Error(http, 401, RefusalMessage(api), "InvalidKeyException");

    /// <summary>What a refused client reads (REST's 401 body, gRPC's status detail).</summary>
    public string RefusalMessage(Api api) =>
        $"Token Authorization failed. Token either incorrect, expired, or not provided correctly: send 'Authorization: Bearer <{(api is Api.Management or Api.GrpcManagement ? "management" : "inference")} key>' with the key from {KeyFile}";

    private static bool Matches(string given, string expected) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(given)), SHA256.HashData(Encoding.UTF8.GetBytes(expected)));

    private static string NewKey() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(24)).Replace('+', '-').Replace('/', '_');
}
