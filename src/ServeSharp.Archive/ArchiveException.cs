namespace ServeSharp.Archive;

/// <summary>
/// A model archive that cannot be used. The message always names the archive and what is wrong with it,
/// because it travels unchanged to the user who registered the model.
/// </summary>
public sealed class ArchiveException(string message, Exception? inner = null) : Exception(message, inner);
