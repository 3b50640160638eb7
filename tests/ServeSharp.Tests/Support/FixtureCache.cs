using System.Security.Cryptography;
using System.Text;

namespace ServeSharp.Tests.Support;

/// <summary>
/// Generated test fixtures (ONNX models, fitted DeepLabs, photographs), kept across runs under the system temp
/// folder in a folder named after what made them: the content of the generating scripts and the arguments. A
/// changed generator makes a new folder; an unchanged one is made once. Generation writes into a temporary folder
/// that is moved into place only when complete, so a failed or interrupted generation leaves nothing behind, is
/// reported to the test that asked, and is tried again by the next one — never remembered as a result. Several test
/// processes may share the cache (two checkouts tested at once): a lock file next to the folder makes the second wait
/// for the first one's result instead of fitting the same model again beside it on the same cores.
/// </summary>
internal static class FixtureCache
{
    private static readonly object Gate = new();
    private static readonly string Root = Path.Combine(Path.GetTempPath(), "servesharp-tests", "cache");

    /// <summary>The folder holding what <paramref name="generate"/> writes into the folder it is given.</summary>
    /// <param name="name">A readable name for the folder.</param>
    /// <param name="scripts">The generating scripts, relative to tools/: their content is part of the key.</param>
    /// <param name="arguments">Whatever else decides the output.</param>
    public static string Folder(string name, string[] scripts, string[] arguments, Action<string> generate)
    {
        var key = new StringBuilder();
        foreach (var script in scripts) key.Append(Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(Repo.Tool(script))))).Append('\n');
        foreach (var argument in arguments) key.Append(argument).Append('\n');
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key.ToString())))[..16];
        var folder = Path.Combine(Root, $"{name}-{hash}");
        lock (Gate)
        {
            if (Directory.Exists(folder)) return folder;
            Directory.CreateDirectory(Root);
            using var crossProcess = LockFile(folder + ".lock");
            if (Directory.Exists(folder)) return folder;
            var partial = Directory.CreateDirectory(Path.Combine(Root, $"{name}-{hash}.partial-{Environment.ProcessId}")).FullName;
            try
            {
                generate(partial);
                Directory.Move(partial, folder);
            }
            finally
            {
                if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
            }
            return folder;
        }
    }

    /// <summary>Holds the file open exclusively; the OS releases it if the process dies, so a crash never wedges the cache.</summary>
    private static FileStream LockFile(string path)
    {
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                Thread.Sleep(1000);
            }
        }
    }
}
