namespace ServeSharp.Server.Metrics;

/// <summary>A dimension ServeSharp can fill, whatever metrics.yaml calls it (TorchServe spells some two ways).</summary>
internal enum Dimension { ModelName, ModelVersion, Level, Hostname, WorkerName, DeviceId, Protocol }

/// <summary>The dimension values one update knows; a metric takes the ones its metrics.yaml entry lists, in that order.</summary>
internal readonly record struct MetricDimensions(
    string Hostname, string? Level = null, string? ModelName = null, string? ModelVersion = null,
    string? WorkerName = null, string? DeviceId = null, string? Protocol = null)
{
    public string? this[Dimension dimension] => dimension switch
    {
        Dimension.ModelName => ModelName,
        Dimension.ModelVersion => ModelVersion,
        Dimension.Level => Level,
        Dimension.Hostname => Hostname,
        Dimension.WorkerName => WorkerName,
        Dimension.DeviceId => DeviceId,
        _ => Protocol,
    };

    /// <summary>A metrics.yaml dimension name as ServeSharp understands it (TorchServe's host-level metrics say Hostname
    /// and ModelName, its request counters hostname and model_name).</summary>
    public static Dimension? Parse(string name) => name switch
    {
        "ModelName" or "model_name" => Dimension.ModelName,
        "model_version" or "ModelVersion" => Dimension.ModelVersion,
        "Level" or "level" => Dimension.Level,
        "Hostname" or "hostname" => Dimension.Hostname,
        "WorkerName" or "worker_name" => Dimension.WorkerName,
        "DeviceId" or "device_id" => Dimension.DeviceId,
        "protocol" or "Protocol" => Dimension.Protocol,
        _ => null,
    };
}
