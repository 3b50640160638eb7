using ServeSharp.Archive;
using ServeSharp.Archiver;

if (args.Length == 0 || args.Contains("-h") || args.Contains("--help"))
{
    Console.WriteLine(ArchiverOptions.Usage);
    return args.Length == 0 ? 2 : 0;
}

try
{
    var spec = ArchiverOptions.Parse(args);
    var written = ArchiveWriter.Write(spec);
    Console.WriteLine(written);
    return 0;
}
catch (Exception e) when (e is ArgumentException or ArchiveException)
{
    Console.Error.WriteLine($"servesharp-archiver: error: {e.Message}");
    return 1;
}
