namespace ServeSharp.Tests.Isolation;

/// <summary>
/// A custom handler (a .cs file in the archive, as a user writes one) that misbehaves on request: the X-Mode header
/// picks exit, stack overflow, spin, a memory leak, or it reports on its process (pid, environment, a file it tries
/// to read). Without X-Mode it echoes, setting its own status, content type and header.
/// </summary>
internal static class FaultHandlerSource
{
    public const string Code = """
        using System.Text;
        using ServeSharp.Sdk;
        namespace Checks;
        public sealed class FaultHandler : IModelHandler
        {
            private static readonly List<byte[]> Leaked = [];
            public void Initialize(HandlerContext context)
            {
                if (context.HandlerConfig.GetBool("fail_init") == true) throw new InvalidOperationException("this handler refuses to initialise");
            }
            static int Recurse(int n) => Recurse(n + 1) + 1;
            public async Task<IReadOnlyList<HandlerOutput>> HandleAsync(IReadOnlyList<InferenceRequest> batch, CancellationToken ct)
            {
                var r = batch[0];
                switch (r.GetHeader("X-Mode"))
                {
                    case "exit": Environment.Exit(3); break;
                    case "stack": Recurse(0); break;
                    case "spin": while (true) { } 
                    case "leak":
                        for (var i = 0; i < 80; i++) { var b = new byte[10 << 20]; Array.Fill(b, (byte)1); Leaked.Add(b); }
                        await Task.Delay(TimeSpan.FromMinutes(5), ct);
                        break;
                    case "pid": return [HandlerOutput.Text(Environment.ProcessId.ToString())];
                    case "ioerror": throw new FileNotFoundException("a side file is missing", "side.json");
                    case "env": return [HandlerOutput.Text(string.Join("\n", Environment.GetEnvironmentVariables().Keys.Cast<string>().Order()) + "\ncwd=" + Environment.CurrentDirectory)];
                    case "read":
                        try { return [HandlerOutput.Text("read:" + File.ReadAllText(r.GetHeader("X-Path")!))]; }
                        catch (UnauthorizedAccessException) { return [HandlerOutput.Text("denied")]; }
                }
                var outputs = new List<HandlerOutput>();
                foreach (var request in batch)
                {
                    request.Response.StatusCode = 201;
                    request.Response.ContentType = "application/x-echo";
                    request.Response.Headers["X-Echo"] = request.GetString("tag") ?? "none";
                    var body = request.Data?.Value.ToArray() ?? [];
                    outputs.Add(HandlerOutput.Bytes(Encoding.UTF8.GetBytes($"{body.Length}:{request.GetHeader("X-Note")}:").Concat(body).ToArray(), "text/plain"));
                }
                return outputs;
            }
            public void Dispose() { }
        }
        """;
}
