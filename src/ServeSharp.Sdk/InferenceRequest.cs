using System.Text;

namespace ServeSharp.Sdk;

/// <summary>
/// One request of a batch: its body and named parameters (multipart/form fields and query-string values,
/// as TorchServe passes them), its headers, and the response settings the handler may change
/// (TorchServe's <c>context.set_response_content_type</c> / <c>set_response_status</c>).
/// </summary>
public sealed partial class InferenceRequest
{
    /// <summary>Creates a request. Header names are matched case-insensitively.</summary>
    public InferenceRequest(string requestId, IReadOnlyDictionary<string, RequestParameter> parameters, IReadOnlyDictionary<string, string> headers)
    {
        RequestId = requestId;
        Parameters = parameters;
        Headers = new Dictionary<string, string>(headers, StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>A unique id for logs and metrics.</summary>
    public string RequestId { get; }

    /// <summary>Named inputs: <c>body</c> for a raw body, form/multipart fields by name, query parameters by name.</summary>
    public IReadOnlyDictionary<string, RequestParameter> Parameters { get; }

    /// <summary>The request's HTTP headers.</summary>
    public IReadOnlyDictionary<string, string> Headers { get; }

    /// <summary>What the server writes back for this request; the handler may change it.</summary>
    public ResponseSettings Response { get; } = new();

    /// <summary>The payload as TorchServe's vision handlers look for it: the <c>data</c> field, else the <c>body</c>.</summary>
    public RequestParameter? Data =>
        Parameters.TryGetValue("data", out var d) ? d : Parameters.TryGetValue("body", out var b) ? b : null;

    /// <summary>A parameter's value as text (query-string and form values), or null when absent.</summary>
    public string? GetString(string name) => Parameters.TryGetValue(name, out var p) ? p.AsString() : null;

    /// <summary>The header TorchServe's customized describe (<c>GET /models/{name}?customized=true</c>) sets to <c>True</c>.</summary>
    public const string DescribeHeader = "describe";

    /// <summary>
    /// True when this request asks for the handler's metadata rather than a prediction (TorchServe's <c>_is_describe</c>):
    /// it comes alone, with no body. <see cref="BaseHandler{TInput,TOutput}"/> answers it with its <c>Describe</c> hook; a
    /// handler that implements <see cref="IModelHandler"/> directly checks this and answers one JSON object.
    /// </summary>
    public bool IsDescribe => GetHeader(DescribeHeader) == "True";

    /// <summary>A header's value, or null.</summary>
    public string? GetHeader(string name) => Headers.TryGetValue(name, out var v) ? v : null;

    /// <summary>Convenience for tests and tools: a request with one raw body.</summary>
    public static InferenceRequest FromBody(ReadOnlyMemory<byte> body, string? contentType = null, IReadOnlyDictionary<string, string>? query = null)
    {
        var parameters = new Dictionary<string, RequestParameter> { ["body"] = new("body", body, contentType) };
        if (query is not null)
        {
            foreach (var (k, v) in query) parameters[k] = RequestParameter.Text(k, v);
        }
        return new InferenceRequest(Guid.NewGuid().ToString("N"), parameters, new Dictionary<string, string>());
    }
}

/// <summary>One named input: its bytes and, when the client said, its content type.</summary>
public sealed record RequestParameter(string Name, ReadOnlyMemory<byte> Value, string? ContentType = null)
{
    /// <summary>The value decoded as UTF-8.</summary>
    public string AsString() => Encoding.UTF8.GetString(Value.Span);

    /// <summary>A text parameter (query string or form value).</summary>
    public static RequestParameter Text(string name, string value) => new(name, Encoding.UTF8.GetBytes(value), "text/plain");
}

/// <summary>Status, content type and extra headers of one response. Unset values fall back to the handler output's.</summary>
public sealed class ResponseSettings
{
    /// <summary>HTTP status; 200 unless the handler or an error says otherwise.</summary>
    public int StatusCode { get; set; } = 200;

    /// <summary>Content type set by the handler; overrides <see cref="HandlerOutput.ContentType"/>.</summary>
    public string? ContentType { get; set; }

    /// <summary>Extra response headers.</summary>
    public Dictionary<string, string> Headers { get; } = new(StringComparer.OrdinalIgnoreCase);
}
