using ServeSharp.Sdk;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Oip;

/// <summary>One input of an inference request, its data in the protocol's binary form (BYTES length-prefixed).</summary>
/// <param name="BytesAreText">BYTES elements that came as JSON strings (base64 for images, as KServe's clients send them).</param>
internal sealed record OipInput(string Name, string Datatype, long[] Shape, ReadOnlyMemory<byte> Data, bool BytesAreText);

/// <summary>An output the client asked for by name, and whether it wants it as binary data (REST's binary extension).</summary>
internal sealed record OipRequestedOutput(string Name, bool Binary);

/// <summary>An Open Inference Protocol v2 request, whichever transport brought it.</summary>
internal sealed record OipRequest(string? Id, IReadOnlyList<OipInput> Inputs, IReadOnlyList<OipRequestedOutput>? Outputs,
    IReadOnlyDictionary<string, string> Parameters);

/// <summary>The answer: the outputs stacked over the request's batch dimension.</summary>
internal sealed record OipResponse(string ModelName, string ModelVersion, string? Id, IReadOnlyList<Tensor> Outputs);

/// <summary>
/// Runs an OIP v2 request through the one job path. The first dimension of every input is the batch: each of its N
/// instances becomes one job (the model's aggregator batches them with everything else in its queue), and the
/// instances' outputs are stacked back into tensors of N. The handler learns it should answer in tensors from the
/// parameter <c>output=tensors</c>; a handler that answers anything else has its body returned as a BYTES output.
/// </summary>
internal static class OipInference
{
    // Request-level parameters that belong to the protocol, not to the handler.
    private static readonly HashSet<string> ProtocolParameters = ["binary_data_output", "binary_data", "binary_data_size"];

    /// <summary>
    /// The handler requests of <paramref name="request"/>, one per instance of its batch dimension, after checking it
    /// against the model. The endpoint builds them before the run so that it can time them (<see cref="Metrics.PredictionTiming"/>).
    /// </summary>
    public static List<InferenceRequest> Instances(Model model, OipRequest request, IReadOnlyDictionary<string, string> headers, TimeProvider clock)
    {
        ModelManager.EnsureServing(model);
        if (OipMetadata.Described(model) is var (_, known) && request.Outputs?.FirstOrDefault(o => !known.Any(k => k.Name == o.Name)) is { } unknown)
            throw new BadRequestException($"the model has no output '{unknown.Name}'; it has {string.Join(", ", known.Select(k => k.Name))}");
        return Split(request, headers, clock);
    }

    /// <summary>Runs <paramref name="instances"/> (<see cref="Instances"/> of <paramref name="request"/>) and stacks their outputs.</summary>
    public static async Task<OipResponse> InferAsync(ModelManager models, Model model, string? requestedVersion, OipRequest request, IReadOnlyList<InferenceRequest> instances,
        InferenceProtocol protocol, CancellationToken cancellationToken)
    {
        var results = await PredictAllAsync(models, model, requestedVersion, instances, protocol, cancellationToken);
        return new OipResponse(model.Name, model.Version, request.Id, Stack(results, request.Outputs));
    }

    /// <summary>
    /// The instances of one protocol request (OIP v2's batch, KServe v1's instances), each one job through the model's
    /// queue. The first failure is the answer: the other instances are cancelled (their jobs leave the queue).
    /// </summary>
    public static async Task<JobResult[]> PredictAllAsync(ModelManager models, Model model, string? requestedVersion, IReadOnlyList<InferenceRequest> instances,
        InferenceProtocol protocol, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var failure = new ServeSharpException?[1];
        var results = await Task.WhenAll(instances.Select(async instance =>
        {
            try
            {
                var result = await models.PredictAsync(model, requestedVersion, instance, protocol, stop.Token);
                if (result.StatusCode >= 400) Fail(PredictionFailedException.From(result));
                return result;
            }
            catch (ServeSharpException e)
            {
                Fail(e);
                return default;
            }
        }));
        cancellationToken.ThrowIfCancellationRequested();
        return failure[0] is { } first ? throw first : results;

        void Fail(ServeSharpException e)
        {
            if (Interlocked.CompareExchange(ref failure[0], e, null) is null) stop.Cancel();
        }
    }

    /// <summary>One handler request per instance of the batch dimension.</summary>
    private static List<InferenceRequest> Split(OipRequest request, IReadOnlyDictionary<string, string> headers, TimeProvider clock)
    {
        if (request.Inputs.Count == 0) throw new BadRequestException("the request has no inputs");
        var names = new HashSet<string>(StringComparer.Ordinal);
        long batch = -1;
        var sliced = new List<(OipInput Input, IReadOnlyList<(ReadOnlyMemory<byte> Data, string ContentType)> Instances)>();
        foreach (var input in request.Inputs)
        {
            if (!names.Add(input.Name)) throw new BadRequestException($"input '{input.Name}' appears twice");
            if (input.Shape.Length == 0 || input.Shape[0] < 1)
                throw new BadRequestException($"input '{input.Name}': the first dimension of the shape is the batch and must be at least 1");
            if (batch >= 0 && input.Shape[0] != batch)
                throw new BadRequestException($"inputs disagree on the batch size (the first dimension): {batch} and {input.Shape[0]}");
            batch = input.Shape[0];
            if (batch > 1024) throw new BadRequestException($"input '{input.Name}': a batch of {batch} is over the limit of 1024 instances per request");
            sliced.Add((input, Slice(input)));
        }

        var requests = new List<InferenceRequest>((int)batch);
        var id = request.Id ?? Guid.NewGuid().ToString("N");
        for (var i = 0; i < batch; i++)
        {
            var parameters = new Dictionary<string, RequestParameter>(StringComparer.Ordinal);
            foreach (var (input, instances) in sliced)
            {
                var name = request.Inputs.Count == 1 ? "data" : input.Name;
                parameters[name] = new RequestParameter(name, instances[i].Data, instances[i].ContentType);
            }
            foreach (var (key, value) in request.Parameters)
            {
                if (!ProtocolParameters.Contains(key)) parameters.TryAdd(key, RequestParameter.Text(key, value));
            }
            parameters.TryAdd("output", RequestParameter.Text("output", "tensors"));
            if (request.Outputs is { Count: > 0 } outputs)
                parameters[Tensor.RequestedOutputsParameter] = RequestParameter.Text(Tensor.RequestedOutputsParameter, string.Join(',', outputs.Select(o => o.Name)));
            requests.Add(new InferenceRequest(batch == 1 ? id : $"{id}-{i}", parameters, headers) { Clock = clock });
        }
        return requests;
    }

    /// <summary>An input cut along its first dimension; each piece keeps the rest of the shape.</summary>
    private static List<(ReadOnlyMemory<byte>, string)> Slice(OipInput input)
    {
        var count = Count(input);
        var n = (int)input.Shape[0];
        var per = count / n;
        var pieces = new List<(ReadOnlyMemory<byte>, string)>(n);
        if (input.Datatype != "BYTES")
        {
            var size = Tensor.ElementSize(input.Datatype);
            if (input.Data.Length != count * size)
                throw new BadRequestException($"input '{input.Name}': {input.Data.Length} bytes of data for {count} {input.Datatype} elements ({count * size} bytes)");
            var type = new Tensor(input.Name, input.Datatype, input.Shape[1..], default).InputContentType();
            for (var i = 0; i < n; i++) pieces.Add((input.Data.Slice((int)(i * per * size), (int)(per * size)), type));
            return pieces;
        }

        List<ReadOnlyMemory<byte>> elements;
        try
        {
            elements = Tensor.UnpackBytes(input.Data);
        }
        catch (FormatException e)
        {
            throw new BadRequestException($"input '{input.Name}': {e.Message}");
        }
        if (elements.Count != count) throw new BadRequestException($"input '{input.Name}': {elements.Count} elements for shape [{string.Join(", ", input.Shape)}]");
        // One element an instance (an image) goes to the handler as it is; several go as a BYTES tensor.
        var elementType = input.BytesAreText ? "text/plain; charset=utf-8" : "application/octet-stream";
        var tensorType = new Tensor(input.Name, "BYTES", input.Shape[1..], default).InputContentType();
        for (var i = 0; i < n; i++)
            pieces.Add(per == 1 ? (elements[i], elementType) : (Tensor.PackBytes(elements.GetRange((int)(i * per), (int)per)), tensorType));
        return pieces;
    }

    private static long Count(OipInput input)
    {
        try
        {
            Tensor.ElementSize(input.Datatype);
            return Tensor.ElementCount(input.Shape);
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            throw new BadRequestException($"input '{input.Name}': {e.Message}");
        }
    }

    /// <summary>Each instance's tensors stacked over the batch; instances must agree on names, datatypes and shapes.</summary>
    private static List<Tensor> Stack(JobResult[] results, IReadOnlyList<OipRequestedOutput>? requested)
    {
        var perInstance = results.Select(Outputs).ToArray();
        var first = perInstance[0];
        var stacked = new List<Tensor>(first.Count);
        for (var t = 0; t < first.Count; t++)
        {
            var model = first[t];
            foreach (var other in perInstance)
            {
                if (other.Count != first.Count || other[t].Name != model.Name || other[t].Datatype != model.Datatype)
                    throw new InternalServerException("the handler answered the instances of one request with different outputs");
                if (!other[t].Shape.SequenceEqual(model.Shape))
                    throw new BadRequestException($"the instances of this request gave outputs of different shapes ([{string.Join(", ", model.Shape)}] and [{string.Join(", ", other[t].Shape)}]): send images of different sizes in separate requests");
            }
            stacked.Add(new Tensor(model.Name, model.Datatype, [perInstance.Length, .. model.Shape], Concat(perInstance.Select(p => p[t].Data).ToArray())));
        }
        foreach (var name in requested?.Select(o => o.Name) ?? [])
        {
            if (!stacked.Exists(s => s.Name == name)) throw new BadRequestException($"the model has no output '{name}'");
        }
        return requested is { Count: > 0 } ? stacked.FindAll(s => requested.Any(o => o.Name == s.Name)) : stacked;
    }

    private static IReadOnlyList<Tensor> Outputs(JobResult result)
    {
        if (result.ContentType != Tensor.OutputContentType) return [new Tensor("output", "BYTES", [], Tensor.PackBytes([result.Body]))];
        try
        {
            return Tensor.ReadOutput(result.Body);
        }
        catch (FormatException e)
        {
            throw new InternalServerException($"the handler's tensor output is malformed: {e.Message}");
        }
    }

    private static ReadOnlyMemory<byte> Concat(ReadOnlyMemory<byte>[] parts)
    {
        if (parts.Length == 1) return parts[0];
        var all = new byte[parts.Sum(p => (long)p.Length)];
        var at = 0;
        foreach (var p in parts)
        {
            p.Span.CopyTo(all.AsSpan(at));
            at += p.Length;
        }
        return all;
    }
}
