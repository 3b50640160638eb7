namespace ServeSharp.Server.Conversion;

/// <summary>
/// A conversion that cannot go on, for a reason the user can act on. The message says what and, where there is one,
/// what to do; it reaches the user unchanged (the command's error line, or a registration's 400).
/// </summary>
internal sealed class ConversionException(string message, Exception? inner = null) : Exception(message, inner);
