using System.Text;

namespace ServeSharp.Server.Configuration;

/// <summary>
/// Reads Java .properties files as TorchServe's config.properties is written: <c>key=value</c> or
/// <c>key: value</c>, <c>#</c>/<c>!</c> comments, and a trailing backslash continuing a value on the next
/// line (the <c>models={...}</c> JSON block spans lines that way).
/// </summary>
internal static class PropertiesFile
{
    public static Dictionary<string, string> Parse(string text)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var lines = text.Replace("\r\n", "\n").Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimStart();
            if (line.Length == 0 || line[0] is '#' or '!') continue;

            var logical = new StringBuilder();
            while (true)
            {
                var trimmed = line.TrimEnd();
                if (EndsWithContinuation(trimmed) && i + 1 < lines.Length)
                {
                    logical.Append(trimmed, 0, trimmed.Length - 1);
                    line = lines[++i].TrimStart();
                    continue;
                }
                logical.Append(trimmed);
                break;
            }

            var entry = logical.ToString();
            var split = entry.IndexOfAny(['=', ':']);
            if (split < 0)
            {
                result[Unescape(entry.Trim())] = "";
                continue;
            }
            result[Unescape(entry[..split].Trim())] = Unescape(entry[(split + 1)..].Trim());
        }
        return result;
    }

    /// <summary>Java's escapes: \\ → \, \t \n \r \f, \uXXXX, and a backslash before any other character keeps that character.</summary>
    private static string Unescape(string value)
    {
        if (!value.Contains('\\')) return value;
        var result = new StringBuilder(value.Length);
        for (var i = 0; i < value.Length; i++)
        {
            if (value[i] != '\\' || i + 1 == value.Length)
            {
                result.Append(value[i]);
                continue;
            }
            var next = value[++i];
            if (next == 'u' && i + 4 < value.Length && ushort.TryParse(value.AsSpan(i + 1, 4), System.Globalization.NumberStyles.AllowHexSpecifier, null, out var code))
            {
                result.Append((char)code); // \uXXXX, as Properties.store writes characters outside Latin-1
                i += 4;
                continue;
            }
            result.Append(next switch { 't' => '\t', 'n' => '\n', 'r' => '\r', 'f' => '\f', _ => next });
        }
        return result.ToString();
    }

    // An odd number of trailing backslashes continues the line; "\\" is a literal backslash.
    private static bool EndsWithContinuation(string line)
    {
        var count = 0;
        for (var j = line.Length - 1; j >= 0 && line[j] == '\\'; j--) count++;
        return count % 2 == 1;
    }
}
