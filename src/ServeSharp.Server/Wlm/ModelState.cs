namespace ServeSharp.Server.Wlm;

/// <summary>
/// A model version's lifecycle. Only <see cref="Model"/> changes it, through <see cref="Model.TryMove"/>:
/// Loading → Ready ⇄ Failed (no worker could load; a retry that loads brings it back), and from any of those
/// → Draining (unregister: no admission, queued jobs answered, running batches finish) → Unloaded.
/// </summary>
internal enum ModelState { Loading, Ready, Failed, Draining, Unloaded }
