using System.Runtime.CompilerServices;

namespace ServeSharp.Sdk;

// Where one request's time goes, kept inside the request itself: a request is touched by one thread at a time
// (endpoint, aggregator, worker, endpoint, each handing it on through a channel or a task), and inline fields cost no
// allocation per request.
public sealed partial class InferenceRequest
{
    private StageTicks _stageTicks;
    private long _stageMark;

    /// <summary>
    /// The clock the request's stage times are taken on (the server's <see cref="TimeProvider"/>). Handlers that split
    /// their hooks' time (<see cref="AddStageTime"/>) take their start timestamps from it.
    /// </summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    /// <summary>When the request's timing started (its body's first read), in <see cref="Clock"/>'s timestamps; 0 when not timed.</summary>
    public long ArrivedAt { get; private set; }

    /// <summary>Where the last stage the server timed ended (<see cref="EndStage"/>, <see cref="MarkStage"/>).</summary>
    public long StageMark => _stageMark;

    /// <summary>True once <see cref="StartTiming"/> was called: the server times this request's stages.</summary>
    public bool IsTimed { get; private set; }

    /// <summary>
    /// Adds the time since <paramref name="startTimestamp"/> (taken from <see cref="Clock"/>) to <paramref name="stage"/>
    /// and returns the timestamp it ended at. A handler calls it inside a hook to report part of the hook's time as
    /// another stage — decode inside Preprocess, serialize inside Postprocess; <see cref="BaseHandler{TInput,TOutput}"/>
    /// counts the rest of each hook as the hook's own stage.
    /// </summary>
    public long AddStageTime(RequestStage stage, long startTimestamp)
    {
        var now = Clock.GetTimestamp();
        _stageTicks[(int)stage] += now - startTimestamp;
        return now;
    }

    /// <summary>Adds <paramref name="ticks"/> (in <see cref="Clock"/>'s timestamp units) to <paramref name="stage"/>.</summary>
    public void AddStageTicks(RequestStage stage, long ticks) => _stageTicks[(int)stage] += ticks;

    /// <summary>The time counted so far for <paramref name="stage"/>, in <see cref="Clock"/>'s timestamp units.</summary>
    public long GetStageTicks(RequestStage stage) => _stageTicks[(int)stage];

    /// <summary>Starts the request's timing at <paramref name="timestamp"/> (the server calls it when the body's read begins).</summary>
    public void StartTiming(long timestamp)
    {
        ArrivedAt = _stageMark = timestamp;
        IsTimed = true;
    }

    /// <summary>
    /// Ends a stage the server times on the request's way through (read_body, queue_wait, batch_formation, write): the
    /// time since the previous mark goes to <paramref name="stage"/>, and <paramref name="timestamp"/> is the next mark.
    /// </summary>
    public void EndStage(RequestStage stage, long timestamp)
    {
        if (!IsTimed) return; // a request whose arrival nobody timed has no mark to measure from
        _stageTicks[(int)stage] += timestamp - _stageMark;
        _stageMark = timestamp;
    }

    /// <summary>Moves the mark without counting a stage: the handler's stages are counted as durations instead.</summary>
    public void MarkStage(long timestamp) => _stageMark = timestamp;

    [InlineArray(9)]
    private struct StageTicks
    {
        private long _element;
    }
}
