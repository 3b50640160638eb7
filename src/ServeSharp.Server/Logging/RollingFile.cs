using System.Text;

namespace ServeSharp.Server.Logging;

/// <summary>
/// One log file that rolls by size, as log4j's RollingFileAppender does: when the next line would take it past the
/// limit, <c>NAME.N</c> is dropped, <c>NAME.i</c> becomes <c>NAME.i+1</c>, the file becomes <c>NAME.1</c>, and a new one
/// starts. Each line is written with one unbuffered write, so a reader (or a crash) never sees half of one. Opened on
/// the first line, so logs nobody writes to are never created.
/// </summary>
internal sealed class RollingFile(string path, long maxBytes, int maxBackups) : IDisposable
{
    private readonly Lock _gate = new();
    private FileStream? _stream;
    private long _length;
    private bool _disposed;

    public string Path { get; } = path;

    public void Append(string line)
    {
        var bytes = Encoding.UTF8.GetBytes(line);
        lock (_gate)
        {
            if (_disposed) return;
            try
            {
                _stream ??= Open();
                if (_length > 0 && _length + bytes.Length > maxBytes) Roll();
                _stream.Write(bytes);
                _length += bytes.Length;
            }
            catch (IOException)
            {
                // A full disk or a removed folder must not fail the request that logged; the next line tries again.
                _stream?.Dispose();
                _stream = null;
            }
            catch (UnauthorizedAccessException)
            {
                _stream?.Dispose();
                _stream = null;
            }
        }
    }

    private FileStream Open()
    {
        System.IO.Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path))!);
        var stream = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0);
        _length = stream.Length;
        return stream;
    }

    private void Roll()
    {
        _stream!.Dispose();
        _stream = null;
        if (maxBackups > 0)
        {
            File.Delete($"{Path}.{maxBackups}");
            for (var i = maxBackups - 1; i >= 1; i--)
            {
                if (File.Exists($"{Path}.{i}")) File.Move($"{Path}.{i}", $"{Path}.{i + 1}");
            }
            File.Move(Path, $"{Path}.1");
        }
        else
        {
            File.Delete(Path);
        }
        _stream = Open();
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            _stream?.Dispose();
            _stream = null;
        }
    }
}
