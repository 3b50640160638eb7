using System.Globalization;

namespace ServeSharp.Server.Http;

/// <summary>
/// Reads management-API query parameters as TorchServe does (NettyUtils.getParameter / getIntParameter,
/// Boolean.parseBoolean): the first value counts; an integer that does not parse is treated as absent, so the caller's
/// default applies; a boolean is true only when it says "true" (any case). TorchServe does that silently; here every
/// value that is not taken as given is logged as a warning, naming the parameter and what happens instead.
/// </summary>
internal readonly struct ManagementQuery(IQueryCollection query, ILogger logger)
{
    /// <summary>Where the warnings go (the management API's category).</summary>
    public ILogger Logger => logger;

    /// <summary>The first value, or null when the parameter is absent (present but empty is "").</summary>
    public string? String(string name) => query.TryGetValue(name, out var values) && values.Count > 0 ? values[0] : null;

    /// <summary>The value as Java's Integer.parseInt reads it, or null when absent or not an integer (logged).</summary>
    public int? Int(string name)
    {
        if (String(name) is not { } text) return null;
        if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value)) return value;
        ManagementLog.NotAnInteger(logger, name, text);
        return null;
    }

    /// <summary>True when the value is "true" in any case; <paramref name="absent"/> when missing; otherwise false (logged unless "false").</summary>
    public bool Bool(string name, bool absent)
    {
        if (String(name) is not { } text) return absent;
        if (text.Equals("true", StringComparison.OrdinalIgnoreCase)) return true;
        if (!text.Equals("false", StringComparison.OrdinalIgnoreCase)) ManagementLog.NotABoolean(logger, name, text);
        return false;
    }

    public static ManagementQuery For(HttpContext http) =>
        new(http.Request.Query, http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(ManagementLog.Category));
}

/// <summary>The management API's warnings about values it did not take as given (REST and gRPC).</summary>
internal static partial class ManagementLog
{
    public const string Category = "ServeSharp.ManagementApi";

    [LoggerMessage(EventId = 7001, Level = LogLevel.Warning, Message = "Management API: {Name}={Value} is not an integer; using the default")]
    public static partial void NotAnInteger(ILogger logger, string name, string value);

    [LoggerMessage(EventId = 7002, Level = LogLevel.Warning, Message = "Management API: {Name}={Value} is not true or false; taken as false")]
    public static partial void NotABoolean(ILogger logger, string name, string value);

    [LoggerMessage(EventId = 7003, Level = LogLevel.Warning, Message = "Management API: {Name}={Value} is out of range; {Instead}")]
    public static partial void OutOfRange(ILogger logger, string name, int value, string instead);

    [LoggerMessage(EventId = 7004, Level = LogLevel.Warning, Message = "Customized metadata of model {Model} is not a JSON object; describe shows {{}}")]
    public static partial void MetadataNotAnObject(ILogger logger, string model);
}
