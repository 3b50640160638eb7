using Microsoft.AspNetCore.Http.Features;
using ServeSharp.Sdk;

namespace ServeSharp.Server.Http;

/// <summary>
/// Turns an HTTP request into the handler's <see cref="InferenceRequest"/> the way TorchServe does: a raw body
/// becomes parameter <c>body</c>; multipart and form fields become parameters by name (files keep their
/// content type); query-string values become parameters; headers pass through.
/// </summary>
internal static class RequestReader
{
    public static async Task<InferenceRequest> ReadAsync(HttpContext http, long maxRequestSize, TimeProvider clock, CancellationToken cancellationToken)
    {
        var request = http.Request;
        if (request.ContentLength > maxRequestSize) throw TooLarge(maxRequestSize);

        var parameters = new Dictionary<string, RequestParameter>(StringComparer.Ordinal);
        try
        {
            if (request.HasFormContentType && !request.ContentType!.StartsWith("multipart/", StringComparison.OrdinalIgnoreCase))
            {
                // curl --data-binary @photo.jpg and Python's urllib label raw bytes application/x-www-form-urlencoded.
                // Text that parses as a form is a form (name=value&...); anything else is the body itself, as the user meant.
                var body = await ReadBodyAsync(request, maxRequestSize, cancellationToken);
                if (UrlEncodedForm(body.Span) is { } fields)
                {
                    foreach (var (name, value) in fields) parameters[name] = RequestParameter.Text(name, value.ToString());
                }
                else
                {
                    parameters["body"] = new RequestParameter("body", body, null);
                }
            }
            else if (request.HasFormContentType)
            {
                var form = await request.ReadFormAsync(new FormOptions { MultipartBodyLengthLimit = maxRequestSize, ValueLengthLimit = (int)Math.Min(int.MaxValue, maxRequestSize) }, cancellationToken);
                foreach (var (name, value) in form) parameters[name] = RequestParameter.Text(name, value.ToString());
                foreach (var file in form.Files)
                {
                    using var buffer = new MemoryStream((int)Math.Min(file.Length, int.MaxValue));
                    await file.CopyToAsync(buffer, cancellationToken);
                    parameters[file.Name] = new RequestParameter(file.Name, buffer.ToArray(), file.ContentType);
                }
            }
            else
            {
                parameters["body"] = new RequestParameter("body", await ReadBodyAsync(request, maxRequestSize, cancellationToken), request.ContentType);
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw TooLarge(maxRequestSize);
        }
        catch (InvalidDataException e)
        {
            throw new Wlm.BadRequestException($"Malformed request body: {e.Message}");
        }

        foreach (var (name, value) in request.Query)
        {
            parameters.TryAdd(name, RequestParameter.Text(name, value.ToString()));
        }

        return new InferenceRequest(http.TraceIdentifier, parameters, Headers(request)) { Clock = clock };
    }

    /// <summary>
    /// The fields of a body that is a URL-encoded form: printable ASCII with at least one name=value pair. Encoded images
    /// (JPEG, PNG: binary from their first bytes) never are; null then.
    /// </summary>
    private static Dictionary<string, Microsoft.Extensions.Primitives.StringValues>? UrlEncodedForm(ReadOnlySpan<byte> body)
    {
        if (body.IsEmpty || body.IndexOf((byte)'=') < 0) return null;
        foreach (var b in body)
        {
            if (b is < 0x20 or > 0x7E && b is not ((byte)'\r' or (byte)'\n' or (byte)'\t')) return null;
        }
        return Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(System.Text.Encoding.ASCII.GetString(body));
    }

    /// <summary>The raw body, refused over <paramref name="maxRequestSize"/> (for protocols that parse their own bodies).</summary>
    public static async Task<ReadOnlyMemory<byte>> ReadRawAsync(HttpContext http, long maxRequestSize, CancellationToken cancellationToken)
    {
        if (http.Request.ContentLength > maxRequestSize) throw TooLarge(maxRequestSize);
        try
        {
            return await ReadBodyAsync(http.Request, maxRequestSize, cancellationToken);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw TooLarge(maxRequestSize);
        }
    }

    /// <summary>The request's headers, for the handler (names matched case-insensitively).</summary>
    public static Dictionary<string, string> Headers(HttpRequest request)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, value) in request.Headers) headers[name] = value.ToString();
        return headers;
    }

    private static async Task<ReadOnlyMemory<byte>> ReadBodyAsync(HttpRequest request, long cap, CancellationToken cancellationToken)
    {
        var buffer = new MemoryStream(request.ContentLength is { } n and < int.MaxValue ? (int)n : 64 * 1024);
        var chunk = new byte[81920];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, cancellationToken)) > 0)
        {
            if (buffer.Length + read > cap) throw TooLarge(cap);
            buffer.Write(chunk, 0, read);
        }
        return buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
    }

    private static Wlm.RequestEntityTooLargeException TooLarge(long cap) =>
        new($"Request body exceeds max_request_size ({cap} bytes)");
}
