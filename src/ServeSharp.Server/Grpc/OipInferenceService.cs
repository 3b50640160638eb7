using System.Buffers.Binary;
using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using ServeSharp.Sdk;
using ServeSharp.Server.Grpc.Oip;
using ServeSharp.Server.Metrics;
using ServeSharp.Server.Oip;
using ServeSharp.Server.Wlm;

namespace ServeSharp.Server.Grpc;

/// <summary>
/// The Open Inference Protocol v2 over gRPC (inference.GRPCInferenceService) on the gRPC inference port, beside
/// TorchServe's service. The same metadata and the same <see cref="OipInference"/> as the REST form; inputs come as
/// raw_input_contents or typed contents, outputs always go back as raw_output_contents.
/// </summary>
internal sealed class OipInferenceService(ModelManager models, PredictionTiming timing) : GRPCInferenceService.GRPCInferenceServiceBase
{
    public override Task<ServerLiveResponse> ServerLive(ServerLiveRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerLiveResponse { Live = true });

    public override Task<ServerReadyResponse> ServerReady(ServerReadyRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerReadyResponse { Ready = models.IsHealthy() });

    public override Task<ModelReadyResponse> ModelReady(ModelReadyRequest request, ServerCallContext context) =>
        Task.FromResult(new ModelReadyResponse { Ready = OipMetadata.IsReady(Target(request.Name, request.Version)) });

    public override Task<ServerMetadataResponse> ServerMetadata(ServerMetadataRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerMetadataResponse { Name = OipMetadata.ServerName, Version = OipMetadata.ServerVersion, Extensions = { OipMetadata.Extensions } });

    public override Task<ModelMetadataResponse> ModelMetadata(ModelMetadataRequest request, ServerCallContext context)
    {
        var model = Target(request.Name, request.Version);
        var (inputs, outputs) = OipMetadata.TensorsOf(model);
        var response = new ModelMetadataResponse { Name = model.Name, Platform = OipMetadata.PlatformOf(model) };
        response.Versions.AddRange(models.GetAllVersions(model.Name).Select(m => m.Version));
        response.Inputs.AddRange(inputs.Select(Spec));
        response.Outputs.AddRange(outputs.Select(Spec));
        return Task.FromResult(response);
    }

    public override async Task<ModelInferResponse> ModelInfer(ModelInferRequest request, ServerCallContext context)
    {
        // gRPC has read and decoded the message before this runs: read_body here is only its turning into the requests.
        var arrived = timing.Arrived();
        var model = Target(request.ModelName, request.ModelVersion);
        var oip = ToOip(request);
        var instances = OipInference.Instances(model, oip, InferenceService.HeadersOf(context), timing.Clock);
        timing.BodyRead(instances, arrived);
        var answer = await OipInference.InferAsync(models, model, request.ModelVersion, oip, instances, InferenceProtocol.OipGrpc, context.CancellationToken);
        var response = new ModelInferResponse { ModelName = answer.ModelName, ModelVersion = answer.ModelVersion, Id = answer.Id ?? "" };
        foreach (var t in answer.Outputs)
        {
            response.Outputs.Add(new ModelInferResponse.Types.InferOutputTensor { Name = t.Name, Datatype = t.Datatype, Shape = { t.Shape } });
            // The stacked outputs are fresh buffers nobody writes again: handed to protobuf without a copy.
            response.RawOutputContents.Add(UnsafeByteOperations.UnsafeWrap(t.Data));
        }
        timing.Written(model.Name, PredictionTiming.LastAnswered(instances)); // the reply goes back to gRPC, which encodes and sends it after this
        return response;
    }

    private Model Target(string name, string version)
    {
        if (name.Length == 0) throw new BadRequestException("the model name is required");
        return models.Get(name, version.Length == 0 ? null : version);
    }

    private static ModelMetadataResponse.Types.TensorMetadata Spec(TensorSpec t) => new() { Name = t.Name, Datatype = t.Datatype, Shape = { t.Shape } };

    private static OipRequest ToOip(ModelInferRequest request)
    {
        if (request.RawInputContents.Count > 0 && request.RawInputContents.Count != request.Inputs.Count)
            throw new BadRequestException($"raw_input_contents has {request.RawInputContents.Count} entries for {request.Inputs.Count} inputs");
        var inputs = new List<OipInput>(request.Inputs.Count);
        for (var i = 0; i < request.Inputs.Count; i++)
        {
            var input = request.Inputs[i];
            var data = request.RawInputContents.Count > 0 ? request.RawInputContents[i].Memory : Typed(input);
            inputs.Add(new OipInput(input.Name, input.Datatype, [.. input.Shape], data, BytesAreText: false));
        }
        var outputs = request.Outputs.Count == 0 ? null : request.Outputs.Select(o => new OipRequestedOutput(o.Name, Binary: true)).ToList();
        return new OipRequest(request.Id.Length == 0 ? null : request.Id, inputs, outputs, request.Parameters.ToDictionary(p => p.Key, p => Text(p.Value)));
    }

    private static string Text(InferParameter p) => p.ParameterChoiceCase switch
    {
        InferParameter.ParameterChoiceOneofCase.BoolParam => p.BoolParam ? "true" : "false",
        InferParameter.ParameterChoiceOneofCase.Int64Param => p.Int64Param.ToString(CultureInfo.InvariantCulture),
        InferParameter.ParameterChoiceOneofCase.DoubleParam => p.DoubleParam.ToString(CultureInfo.InvariantCulture),
        InferParameter.ParameterChoiceOneofCase.Uint64Param => p.Uint64Param.ToString(CultureInfo.InvariantCulture),
        _ => p.StringParam,
    };

    /// <summary>Typed contents in the binary form; the field must be the one the datatype names.</summary>
    private static ReadOnlyMemory<byte> Typed(ModelInferRequest.Types.InferInputTensor input)
    {
        var c = input.Contents ?? throw new BadRequestException($"input '{input.Name}' has neither contents nor raw_input_contents");
        return input.Datatype switch
        {
            "BYTES" => Tensor.PackBytes([.. c.BytesContents.Select(b => b.Memory)]),
            "BOOL" => c.BoolContents.Select(b => b ? (byte)1 : (byte)0).ToArray(),
            "UINT8" => Narrow(c.UintContents, input, 1, v => v <= byte.MaxValue, (s, v) => s[0] = (byte)v),
            "UINT16" => Narrow(c.UintContents, input, 2, v => v <= ushort.MaxValue, (s, v) => BinaryPrimitives.WriteUInt16LittleEndian(s, (ushort)v)),
            "UINT32" => Narrow(c.UintContents, input, 4, _ => true, BinaryPrimitives.WriteUInt32LittleEndian),
            "INT8" => Narrow(c.IntContents, input, 1, v => v is >= sbyte.MinValue and <= sbyte.MaxValue, (s, v) => s[0] = (byte)(sbyte)v),
            "INT16" => Narrow(c.IntContents, input, 2, v => v is >= short.MinValue and <= short.MaxValue, (s, v) => BinaryPrimitives.WriteInt16LittleEndian(s, (short)v)),
            "INT32" => Narrow(c.IntContents, input, 4, _ => true, BinaryPrimitives.WriteInt32LittleEndian),
            "INT64" => Narrow(c.Int64Contents, input, 8, _ => true, BinaryPrimitives.WriteInt64LittleEndian),
            "UINT64" => Narrow(c.Uint64Contents, input, 8, _ => true, BinaryPrimitives.WriteUInt64LittleEndian),
            "FP32" => Narrow(c.Fp32Contents, input, 4, _ => true, BinaryPrimitives.WriteSingleLittleEndian),
            "FP64" => Narrow(c.Fp64Contents, input, 8, _ => true, BinaryPrimitives.WriteDoubleLittleEndian),
            _ => throw new BadRequestException($"input '{input.Name}': {input.Datatype} cannot be sent as typed contents; send raw_input_contents"),
        };
    }

    private delegate void Put<in T>(Span<byte> destination, T value);

    private static byte[] Narrow<T>(IReadOnlyList<T> values, ModelInferRequest.Types.InferInputTensor input, int size, Func<T, bool> fits, Put<T> put)
    {
        var bytes = new byte[values.Count * size];
        for (var i = 0; i < values.Count; i++)
        {
            if (!fits(values[i])) throw new BadRequestException($"input '{input.Name}': element {i} ({values[i]}) is not a {input.Datatype} value");
            put(bytes.AsSpan(i * size), values[i]);
        }
        return bytes;
    }
}
