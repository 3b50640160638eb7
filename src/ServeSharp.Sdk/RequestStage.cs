namespace ServeSharp.Sdk;

/// <summary>
/// The stages of one prediction's time on the server, in the order a request meets them. The metrics API reports each as
/// <c>servesharp_request_stage_seconds{model_name, stage}</c>; together they cover the request from the first byte of
/// its body being read to the last byte of its answer written.
/// </summary>
public enum RequestStage
{
    /// <summary><c>read_body</c>: the endpoint reads the request's body and parameters.</summary>
    ReadBody,

    /// <summary><c>decode</c>: the handler turns encoded bytes (JPEG, PNG) into pixels.</summary>
    Decode,

    /// <summary><c>preprocess</c>: the rest of the handler's Preprocess hook (resize, normalise).</summary>
    Preprocess,

    /// <summary><c>queue_wait</c>: from the body read to the aggregator taking the job off the model's queue.</summary>
    QueueWait,

    /// <summary><c>batch_formation</c>: from the job's leaving the queue to its batch starting on a worker (maxBatchDelay).</summary>
    BatchFormation,

    /// <summary><c>inference</c>: the handler's Inference hook; a batch's run counts for each of its requests.</summary>
    Inference,

    /// <summary><c>postprocess</c>: the handler's Postprocess hook (argmax, softmax), less what it reports as serialize.</summary>
    Postprocess,

    /// <summary><c>serialize</c>: writing the answer's bytes (JSON, PNG), in the handler or, for KServe v1 and OIP v2 REST, at the endpoint.</summary>
    Serialize,

    /// <summary><c>write</c>: from the worker's answer (or the endpoint's serialize) to the answer handed to the client's connection or gRPC call.</summary>
    Write,
}
