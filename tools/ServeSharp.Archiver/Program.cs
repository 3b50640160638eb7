using ServeSharp.Archive;
using ServeSharp.Archiver;

if (args.Length == 0 || args.Contains("-h") || args.Contains("--help"))
{
    Console.WriteLine(ArchiverOptions.Usage);
    return args.Length == 0 ? 2 : 0;
}

try
{
    var command = ArchiverOptions.Parse(args);
    using var int8 = Int8Step.Prepare(command, Console.Out);
    using var fp16 = Fp16Step.Prepare(command, Console.Out);
    var written = ArchiveWriter.Write(int8?.Spec ?? fp16?.Spec ?? command.Spec);
    Console.WriteLine(written);
    return 0;
}
catch (Exception e) when (e is ArgumentException or ArchiveException or InvalidDataException)
{
    Console.Error.WriteLine($"servesharp-archiver: error: {e.Message}");
    return 1;
}
