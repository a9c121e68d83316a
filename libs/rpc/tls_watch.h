// TLS material that follows the files on disk. cert-manager (and any
// operator rotating a Secret) renews certificates in place; a daemon that
// read them once would serve an expired certificate until restarted. With a
// reload interval, servers and channels built by libs/rpc use gRPC's
// FileWatcherCertificateProvider: new handshakes get the current
// certificate, key and CA; established connections keep theirs.
//
// Files must be replaced atomically (a Kubernetes Secret volume swaps its
// ..data symlink; by hand: write new files, then rename). A half-written or
// mismatched pair is refused by gRPC, which keeps the previous one and logs.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/tls_certificate_provider.h"

namespace mailgrid::rpc {

// One provider per distinct (key, cert, ca, interval), shared by every
// server and channel of the process (each provider owns a refresh thread).
// Empty key/cert: CA only (a TLS client without a client certificate);
// empty ca: identity only (a TLS server that does not ask for client
// certificates).
std::shared_ptr<grpc::experimental::CertificateProviderInterface> WatchedCertificates(
    const std::string& key_file, const std::string& cert_file, const std::string& ca_file,
    absl::Duration refresh);

// Start-time checks that name the flag: each file readable and PEM, and the
// private key the one of the certificate (a mismatch would otherwise only
// show as failed handshakes). Flags are named without "--" ("tls-cert").
absl::Status CheckKeyPair(const std::string& cert_flag, const std::string& cert_file,
                          const std::string& key_flag, const std::string& key_file);

// Reads a PEM file, naming `flag` in the error ("--tls-cert: cannot read X").
absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path);

}  // namespace mailgrid::rpc
