using System.Buffers;
using System.Text;

namespace ServeSharp.Server.Workers;

/// <summary>
/// Reads a worker process's stdout or stderr as lines for the server's log, each cut at <see cref="MaxLineBytes"/>:
/// a handler that prints megabytes without a newline must not grow the server's memory (the runtime's own line
/// reader would hold the whole line).
/// </summary>
internal static class CappedLines
{
    public const int MaxLineBytes = 16 * 1024;

    /// <summary>Calls <paramref name="line"/> for every line until the stream ends.</summary>
    public static async Task ReadAsync(Stream stream, Action<string> line)
    {
        var chunk = ArrayPool<byte>.Shared.Rent(4096);
        var pending = new byte[MaxLineBytes];
        var length = 0;
        var cut = false;
        try
        {
            int read;
            while ((read = await stream.ReadAsync(chunk.AsMemory(0, 4096))) > 0)
            {
                foreach (var b in chunk.AsSpan(0, read))
                {
                    if (b == (byte)'\n')
                    {
                        line(Text(pending, length, cut));
                        (length, cut) = (0, false);
                    }
                    else if (length < pending.Length) pending[length++] = b;
                    else cut = true;
                }
            }
            if (length > 0 || cut) line(Text(pending, length, cut));
        }
        catch (IOException)
        {
            // The process is gone; what it wrote so far was logged.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }

    private static string Text(byte[] bytes, int length, bool cut)
    {
        var text = Encoding.UTF8.GetString(bytes, 0, length).TrimEnd('\r');
        return cut ? text + $" … (line cut at {MaxLineBytes} bytes)" : text;
    }
}
