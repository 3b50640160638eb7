using System.Runtime.Loader;
using ServeSharp.Sdk;

namespace ServeSharp.Loader;

/// <summary>
/// Makes handler instances for one model (one per worker). For handlers loaded from the archive it owns the
/// collectible load context; disposing the factory unloads it once the last handler is gone.
/// </summary>
internal sealed class HandlerFactory : IDisposable
{
    private readonly Func<IModelHandler> _create;
    private AssemblyLoadContext? _loadContext;
    private bool _disposed;

    internal HandlerFactory(string description, Func<IModelHandler> create, AssemblyLoadContext? loadContext)
    {
        Description = description;
        _create = create;
        _loadContext = loadContext;
    }

    /// <summary>
    /// A handler that could not be resolved. Registration goes ahead, as TorchServe's does (the handler is the worker's
    /// business): every worker then fails to load with <paramref name="reason"/>, and describe shows it.
    /// </summary>
    public static HandlerFactory Unresolved(string handler, string reason) =>
        new($"{handler} (unresolved)", () => throw new HandlerLoadException(reason), loadContext: null);

    /// <summary>What was loaded, for logs: "built-in image_segmenter", "handler.cs:My.Handler".</summary>
    public string Description { get; }

    /// <summary>The load context of an archive handler, or null for a built-in. Tests watch it unload.</summary>
    public AssemblyLoadContext? LoadContext => _loadContext;

    /// <summary>A new, uninitialised handler.</summary>
    public IModelHandler Create()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _create();
    }

    /// <summary>Starts unloading the handler's assembly; it is freed when no handler instance refers to it.</summary>
    public void Dispose()
    {
        _disposed = true;
        _loadContext?.Unload();
        _loadContext = null;
    }
}
