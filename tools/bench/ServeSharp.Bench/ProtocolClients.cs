using System.Buffers.Binary;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using Google.Protobuf;
using Grpc.Net.Client;
using Org.Pytorch.Serve.Grpc.Inference;
using ServeSharp.Server.Grpc.Oip;

namespace ServeSharp.Bench;

/// <summary>The clients of the protocols scenario, each sending request i with image i (round-robin) and reading the whole answer.</summary>
public static class ProtocolClients
{
    /// <summary>
    /// OIP v2 REST with the binary tensor extension, as Triton's and KServe's clients send it: the JPEG as one BYTES
    /// element after the JSON header, and the class map asked for as binary data.
    /// </summary>
    public static Func<int, Task<bool>> OipBinary(HttpClient http, string model, IReadOnlyList<byte[]> images) => async i =>
    {
        var image = images[i % images.Count];
        var json = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
            $$$"""{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":{{{image.Length + 4}}}}}],"outputs":[{"name":"classes","parameters":{"binary_data":true}}]}"""));
        var body = new byte[json.Length + 4 + image.Length];
        json.CopyTo(body, 0);
        BinaryPrimitives.WriteInt32LittleEndian(body.AsSpan(json.Length), image.Length);
        image.CopyTo(body, json.Length + 4);
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", json.Length.ToString(CultureInfo.InvariantCulture));
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/v2/models/{model}/infer") { Content = content };
        return await LoadGenerator.SendAndDrainAsync(http, request);
    };

    /// <summary>TorchServe's gRPC Predictions, as torchserve_grpc_client.py sends it: the image as input "data".</summary>
    public static Func<int, Task<bool>> TorchServeGrpc(GrpcChannel channel, string model, IReadOnlyList<byte[]> images)
    {
        var client = new InferenceAPIsService.InferenceAPIsServiceClient(channel);
        return async i =>
        {
            var request = new PredictionsRequest { ModelName = model, Input = { ["data"] = UnsafeByteOperations.UnsafeWrap(images[i % images.Count]) } };
            var response = await client.PredictionsAsync(request);
            return response.Prediction.Length > 0;
        };
    }

    /// <summary>OIP v2 gRPC ModelInfer: the JPEG as one raw BYTES element, the class map back as raw_output_contents.</summary>
    public static Func<int, Task<bool>> OipGrpc(GrpcChannel channel, string model, IReadOnlyList<byte[]> images)
    {
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        return async i =>
        {
            var image = images[i % images.Count];
            var packed = new byte[4 + image.Length];
            BinaryPrimitives.WriteInt32LittleEndian(packed, image.Length);
            image.CopyTo(packed, 4);
            var request = new ModelInferRequest
            {
                ModelName = model,
                Inputs = { new ModelInferRequest.Types.InferInputTensor { Name = "image", Datatype = "BYTES", Shape = { 1 } } },
                Outputs = { new ModelInferRequest.Types.InferRequestedOutputTensor { Name = "classes" } },
                RawInputContents = { UnsafeByteOperations.UnsafeWrap(packed) },
            };
            var response = await client.ModelInferAsync(request);
            return response.RawOutputContents.Count == 1;
        };
    }
}
