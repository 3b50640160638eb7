namespace ServeSharp.Server.Http;

/// <summary>The APIs; a listener serves one, or several when their addresses are equal (REST with REST, gRPC with gRPC).</summary>
[Flags]
internal enum Api { None = 0, Inference = 1, Management = 2, Metrics = 4, GrpcInference = 8, GrpcManagement = 16 }

/// <summary>One endpoint of an API: the listener that may serve it is decided by <see cref="Api"/>.</summary>
internal sealed record Route(Api Api, string Method, string Pattern, RequestDelegate Handler, bool Open = false);

/// <summary>Endpoint metadata: which API a matched route belongs to and whether it needs no token.</summary>
internal sealed record ApiTag(Api Api, bool Open);
