using System.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using ServeSharp.Sdk;
using ServeSharp.Server.Workers;

namespace ServeSharp.Tests.Isolation;

/// <summary>
/// The worker socket's frames: what goes in comes out (requests, responses and the settings a handler made), and a
/// frame from a worker process, which runs code from an archive, can be anything: a bad one is a protocol error,
/// never another exception or a huge allocation.
/// </summary>
public sealed class WorkerProtocolTests
{
    [Fact]
    public void A_batch_and_its_results_cross_the_socket_unchanged()
    {
        var image = new byte[70_000];
        new Random(7).NextBytes(image);
        var parameters = new Dictionary<string, RequestParameter>
        {
            ["data"] = new("data", image, "image/jpeg"),
            ["tag"] = RequestParameter.Text("tag", "ünïcode ✓"),
            ["empty"] = new("empty", Array.Empty<byte>()),
        };
        var sent = new[]
        {
            new InferenceRequest("r1", parameters, new Dictionary<string, string> { ["X-Note"] = "a", ["Content-Type"] = "image/jpeg" }),
            InferenceRequest.FromBody("raw"u8.ToArray()),
        };
        var frame = new FrameBuilder();
        var (id, received) = WorkerMessages.ReadBatch(Payload(WorkerMessages.Batch(frame, 42, sent)));
        Assert.Equal(42, id);
        Assert.Equal(2, received.Length);
        Assert.Equal("r1", received[0].RequestId);
        Assert.Equal("a", received[0].GetHeader("x-note"));
        Assert.Equal(image, received[0].Data!.Value.ToArray());
        Assert.Equal("image/jpeg", received[0].Data!.ContentType);
        Assert.Equal("ünïcode ✓", received[0].GetString("tag"));
        Assert.Equal(0, received[0].Parameters["empty"].Value.Length);
        Assert.Equal("raw", received[1].Data!.AsString());

        received[0].Response.StatusCode = 201;
        received[0].Response.ContentType = "application/x-echo";
        received[0].Response.Headers["X-Echo"] = "yes";
        HandlerOutput[] outputs = [HandlerOutput.Bytes(image, "image/png"), HandlerOutput.Error(400, "bad image")];
        var (resultId, back) = WorkerMessages.ReadResult(Payload(WorkerMessages.Result(frame, 42, received, outputs)), sent);
        Assert.Equal(42, resultId);
        Assert.Equal(image, back[0].Body.ToArray());
        Assert.Equal(("image/png", (int?)null), (back[0].ContentType, back[0].StatusCode));
        Assert.Equal(400, back[1].StatusCode);
        Assert.Contains("bad image", Encoding.UTF8.GetString(back[1].Body.Span));
        Assert.Equal((201, "application/x-echo", "yes"), (sent[0].Response.StatusCode, sent[0].Response.ContentType, sent[0].Response.Headers["X-Echo"]));
        Assert.Equal((200, (string?)null), (sent[1].Response.StatusCode, sent[1].Response.ContentType));
    }

    [Property(MaxTest = 500)]
    public void Any_result_payload_is_read_or_refused_as_a_protocol_error(byte[] payload) => ReadOrRefuse(() => WorkerMessages.ReadResult(payload, null));

    [Property(MaxTest = 500)]
    public void A_damaged_result_is_read_or_refused_as_a_protocol_error(NonNegativeInt cut, byte flip)
    {
        var frame = new FrameBuilder();
        var request = InferenceRequest.FromBody("x"u8.ToArray());
        var whole = Payload(WorkerMessages.Result(frame, 1, [request], [HandlerOutput.Text("hello"), HandlerOutput.Text("second")]));
        var at = cut.Get % whole.Length;
        var damaged = whole.ToArray();
        damaged[at] ^= flip;
        ReadOrRefuse(() => WorkerMessages.ReadResult(damaged, null));
        ReadOrRefuse(() => WorkerMessages.ReadResult(whole[..at], null));
    }

    [Fact]
    public async Task A_frame_header_that_claims_too_much_or_ends_early_is_refused()
    {
        var header = new byte[WorkerProtocol.HeaderSize];
        Assert.Null(await WorkerProtocol.ReadAsync(new MemoryStream(), header, CancellationToken.None));
        byte[] huge = [0xff, 0xff, 0xff, 0x7f, (byte)FrameType.Result];
        await Assert.ThrowsAsync<InvalidDataException>(() => WorkerProtocol.ReadAsync(new MemoryStream(huge), header, CancellationToken.None));
        byte[] negative = [0xff, 0xff, 0xff, 0xff, (byte)FrameType.Result];
        await Assert.ThrowsAsync<InvalidDataException>(() => WorkerProtocol.ReadAsync(new MemoryStream(negative), header, CancellationToken.None));
        byte[] truncated = [10, 0, 0, 0, (byte)FrameType.Result, 1, 2];
        await Assert.ThrowsAsync<InvalidDataException>(() => WorkerProtocol.ReadAsync(new MemoryStream(truncated), header, CancellationToken.None));
        byte[] halfHeader = [10, 0];
        await Assert.ThrowsAsync<InvalidDataException>(() => WorkerProtocol.ReadAsync(new MemoryStream(halfHeader), header, CancellationToken.None));
    }

    private static void ReadOrRefuse(Action read)
    {
        try
        {
            read();
        }
        catch (InvalidDataException)
        {
        }
    }

    // The payload of a built frame, as the reading side sees it after the header.
    private static byte[] Payload(ReadOnlyMemory<byte> frame) => frame[WorkerProtocol.HeaderSize..].ToArray();
}
