using System.Globalization;

namespace ServeSharp.Contracts;

/// <summary>
/// A read-only mapping of configuration values, as YAML gives them: scalars are strings, sequences are
/// lists, mappings are nested sections. Typed getters parse on access and name the key when a value is wrong.
/// </summary>
public sealed class ConfigSection
{
    private readonly IReadOnlyDictionary<string, object?> _values;

    /// <summary>A section over <paramref name="values"/> (scalars as strings, lists, nested dictionaries).</summary>
    public ConfigSection(IReadOnlyDictionary<string, object?> values) => _values = values;

    /// <summary>A section with no keys.</summary>
    public static ConfigSection Empty { get; } = new(new Dictionary<string, object?>());

    /// <summary>The keys present.</summary>
    public IEnumerable<string> Keys => _values.Keys;

    /// <summary>Whether <paramref name="key"/> is present.</summary>
    public bool Contains(string key) => _values.ContainsKey(key);

    /// <summary>The raw value of <paramref name="key"/>, or null.</summary>
    public object? this[string key] => _values.TryGetValue(key, out var v) ? v : null;

    /// <summary>A scalar as text, or null when absent.</summary>
    public string? GetString(string key) => _values.TryGetValue(key, out var v) ? v as string : null;

    /// <summary>An integer, or null when absent; a value that is not one throws <see cref="ConfigValueException"/>.</summary>
    public int? GetInt(string key) => Parse(key, static s => int.Parse(s, NumberStyles.Integer, CultureInfo.InvariantCulture));

    /// <summary>A number, or null when absent; a value that is not one throws <see cref="ConfigValueException"/>.</summary>
    public double? GetDouble(string key) => Parse(key, static s => double.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture));

    /// <summary>true/false (also yes/no, on/off, 1/0), or null when absent.</summary>
    public bool? GetBool(string key) => Parse(key, static s => s.ToLowerInvariant() switch
    {
        "true" or "yes" or "on" or "1" => true,
        "false" or "no" or "off" or "0" => false,
        _ => throw new FormatException(),
    });

    /// <summary>A nested mapping, or null.</summary>
    public ConfigSection? GetSection(string key) =>
        _values.TryGetValue(key, out var v) && v is IReadOnlyDictionary<string, object?> d ? new ConfigSection(d) : null;

    /// <summary>A list of numbers, given as a YAML sequence or as a comma-separated string ("0.5,1.0,1.5").</summary>
    public IReadOnlyList<double>? GetDoubleList(string key)
    {
        if (!_values.TryGetValue(key, out var v) || v is null) return null;
        IEnumerable<object?> items = v switch
        {
            IEnumerable<object?> list when v is not string => list,
            string s => s.Trim('[', ']', ' ').Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            _ => throw new ConfigValueException(key, v.ToString(), "a list of numbers"),
        };
        var result = new List<double>();
        foreach (var item in items)
        {
            if (item is not string s || !double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d))
                throw new ConfigValueException(key, item?.ToString(), "a list of numbers");
            result.Add(d);
        }
        return result;
    }

    /// <summary>A list of strings, given as a YAML sequence or a comma-separated string.</summary>
    public IReadOnlyList<string>? GetStringList(string key)
    {
        if (!_values.TryGetValue(key, out var v) || v is null) return null;
        if (v is string s) return s.Trim('[', ']', ' ').Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var result = new List<string>();
        if (v is IEnumerable<object?> list)
        {
            foreach (var item in list) result.Add(item?.ToString() ?? "");
        }
        return result;
    }

    /// <summary>This section with <paramref name="overrides"/> laid over it (later wins).</summary>
    public ConfigSection With(IEnumerable<KeyValuePair<string, object?>> overrides)
    {
        var merged = new Dictionary<string, object?>(_values);
        foreach (var (k, v) in overrides) merged[k] = v;
        return new ConfigSection(merged);
    }

    private T? Parse<T>(string key, Func<string, T> parse) where T : struct
    {
        if (!_values.TryGetValue(key, out var v) || v is null) return null;
        if (v is not string s) throw new ConfigValueException(key, v.ToString(), typeof(T).Name);
        try
        {
            return parse(s.Trim());
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            throw new ConfigValueException(key, s, typeof(T).Name);
        }
    }
}

/// <summary>A configuration value of the wrong shape; the message names the key, the value and what was expected.</summary>
public sealed class ConfigValueException(string key, string? value, string expected)
    : FormatException($"config key '{key}': '{value}' is not {Article(expected)}")
{
    /// <summary>The key whose value was wrong.</summary>
    public string Key { get; } = key;

    private static string Article(string expected) => expected switch
    {
        "Int32" => "an integer",
        "Double" => "a number",
        "Boolean" => "true or false",
        _ => expected,
    };
}
