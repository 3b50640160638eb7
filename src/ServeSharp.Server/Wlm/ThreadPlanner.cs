namespace ServeSharp.Server.Wlm;

/// <summary>
/// ONNX Runtime intra-op threads per worker, planned over the whole machine: the cores divided by every worker
/// that every registered model wants (its minWorkers), at least one. A model overrides it with
/// <c>handler: intra_op_threads</c> in model-config.yaml. A worker keeps the count it started with: registering
/// or scaling another model re-plans the workers started after it, not the running ones.
/// </summary>
internal static class ThreadPlanner
{
    public static int IntraOpThreads(int cores, int plannedWorkers, int? modelOverride) =>
        modelOverride is > 0 ? modelOverride.Value : Math.Max(1, cores / Math.Max(1, plannedWorkers));
}
