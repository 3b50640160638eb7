using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ServeSharp.Server.Configuration;

/// <summary>
/// The server's TLS certificate from TorchServe's keys: certificate_file + private_key_file (PEM), or keystore +
/// keystore_pass (PKCS12). One certificate serves every https:// REST listener and, with enable_grpc_ssl, both gRPC ports.
/// </summary>
internal static class TlsCertificate
{
    public static bool Configured(ServerConfig config) => config.Keystore is not null || config.CertificateFile is not null;

    /// <summary>Loads it; a missing or unreadable file is a start-up error naming the key.</summary>
    public static X509Certificate2 Load(ServerConfig config)
    {
        try
        {
            if (config.CertificateFile is { } cert)
            {
                if (config.PrivateKeyFile is not { } key) throw new FormatException("config.properties: certificate_file needs private_key_file (PEM)");
                return X509Certificate2.CreateFromPemFile(cert, key);
            }
            if (config.Keystore is { } keystore) return X509CertificateLoader.LoadPkcs12FromFile(keystore, config.KeystorePass);
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            var source = config.CertificateFile is not null ? $"certificate_file {config.CertificateFile} / private_key_file {config.PrivateKeyFile}" : $"keystore {config.Keystore}";
            throw new FormatException($"config.properties: cannot load the TLS certificate from {source}: {e.Message}", e);
        }
        throw new FormatException("config.properties: an https:// address (or enable_grpc_ssl=true) needs certificate_file and private_key_file (PEM), or keystore and keystore_pass (PKCS12)");
    }
}
