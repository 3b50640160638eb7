namespace ServeSharp.Server.Http;

/// <summary>
/// The APIs; a listener serves one, or several when their addresses are equal (REST with REST, gRPC with gRPC).
/// <see cref="KServe"/> is the listener KServe routes its v1/v2 traffic to (kserve_address): it serves the inference
/// API's KServe routes, under the inference API's key.
/// </summary>
[Flags]
internal enum Api { None = 0, Inference = 1, Management = 2, Metrics = 4, GrpcInference = 8, GrpcManagement = 16, KServe = 32 }

/// <summary>How a route's errors are written: TorchServe's <c>{code, type, message}</c>, or KServe's <c>{"error": message}</c> (v1 and OIP v2).</summary>
internal enum ErrorForm { TorchServe, KServe }

/// <summary>
/// One endpoint of an API: the listener that may serve it is decided by <see cref="Api"/>, and by <see cref="Also"/>
/// for the inference API's routes that KServe's listener serves too (its protocols, and /ping for health checks).
/// </summary>
internal sealed record Route(Api Api, string Method, string Pattern, RequestDelegate Handler, bool Open = false, ErrorForm Errors = ErrorForm.TorchServe,
    Api Also = Api.None)
{
    /// <summary>Whether a listener serving <paramref name="apis"/> serves this route.</summary>
    public bool ServedOn(Api apis) => apis.HasFlag(Api) || (apis & Also) != Api.None;
}

/// <summary>Endpoint metadata: which API a matched route belongs to, whether it needs no token, and its error form.</summary>
internal sealed record ApiTag(Api Api, bool Open, ErrorForm Errors = ErrorForm.TorchServe);
