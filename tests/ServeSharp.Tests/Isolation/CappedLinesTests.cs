using System.Text;
using ServeSharp.Server.Workers;

namespace ServeSharp.Tests.Isolation;

/// <summary>A worker process's output reaches the server's log line by line, and no line can grow the server's memory.</summary>
public sealed class CappedLinesTests
{
    [Fact]
    public async Task Lines_pass_whole_and_a_line_without_end_is_cut()
    {
        var huge = new string('x', 100_000);
        var text = $"first line\r\nünïcode ✓\n{huge}\nafter\nlast without newline";
        var lines = new List<string>();
        await CappedLines.ReadAsync(new MemoryStream(Encoding.UTF8.GetBytes(text)), lines.Add);
        Assert.Equal(5, lines.Count);
        Assert.Equal(["first line", "ünïcode ✓"], lines[..2]);
        Assert.StartsWith(new string('x', CappedLines.MaxLineBytes), lines[2]);
        Assert.EndsWith($"(line cut at {CappedLines.MaxLineBytes} bytes)", lines[2]);
        Assert.True(lines[2].Length < CappedLines.MaxLineBytes + 100);
        Assert.Equal(["after", "last without newline"], lines[3..]);
    }
}
