#include "libs/rpc/server.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "grpcpp/server_builder.h"
#include "libs/base/log.h"
#include "libs/base/net.h"
#include "libs/base/status.h"
#include "libs/rpc/interceptor.h"
#include "libs/rpc/tls_watch.h"

namespace mailgrid::rpc {
namespace {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(const ServerOptions& o) {
  RETURN_IF_ERROR(CheckKeyPair("tls-cert", o.tls_cert_file, "tls-key", o.tls_key_file));
  if (!o.tls_client_ca_file.empty()) {
    RETURN_IF_ERROR(ReadPemFile("tls-client-ca", o.tls_client_ca_file).status());
  }
  if (o.tls_reload_interval <= absl::ZeroDuration()) {
    grpc::SslServerCredentialsOptions ssl;
    ASSIGN_OR_RETURN(std::string cert, ReadPemFile("tls-cert", o.tls_cert_file));
    ASSIGN_OR_RETURN(std::string key, ReadPemFile("tls-key", o.tls_key_file));
    ssl.pem_key_cert_pairs.push_back({key, cert});
    if (!o.tls_client_ca_file.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile("tls-client-ca", o.tls_client_ca_file));
      ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    return grpc::SslServerCredentials(ssl);
  }
  grpc::experimental::TlsServerCredentialsOptions tls(WatchedCertificates(
      o.tls_key_file, o.tls_cert_file, o.tls_client_ca_file, o.tls_reload_interval));
  tls.watch_identity_key_cert_pairs();
  if (o.tls_client_ca_file.empty()) {
    tls.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    tls.watch_root_certs();
    tls.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(tls);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& o) {
  if (!o.peer_acl.empty() && o.tls_client_ca_file.empty())
    return absl::InvalidArgumentError("--peer-acl needs mTLS (--tls-client-ca): without client "
                                      "certificates there is no peer name to check");
  if (o.tls_cert_file.empty() && o.tls_key_file.empty()) {
    if (!o.tls_client_ca_file.empty())
      return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
    return grpc::InsecureServerCredentials();
  }
  if (o.tls_cert_file.empty() || o.tls_key_file.empty())
    return absl::InvalidArgumentError("--tls-cert and --tls-key must be given together");
  ASSIGN_OR_RETURN(auto creds, TlsCredentials(o));
  if (!o.peer_acl.empty())
    creds->SetAuthMetadataProcessor(
        std::make_shared<PeerAclProcessor>(o.peer_acl, o.registry.get()));
  return creds;
}

// The probe port: no services but the default health service (gRPC adds it
// to every server once EnableDefaultHealthCheckService is on), no TLS.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartHealthOnly(const std::string& listen,
                                                              std::string* address) {
  auto hp = net::ParseHostPort(listen);
  if (!hp.ok()) return absl::InvalidArgumentError(absl::StrCat("--health-listen: ", hp.status().message()));
  if (hp->port != 0) {
    absl::Status free = net::CheckPortFree(*hp);
    if (!free.ok()) return absl::UnavailableError(absl::StrCat("health listener: ", free.message()));
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(hp->ToString(), grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0)
    return absl::UnavailableError(absl::StrCat("health listener: cannot listen on ", hp->ToString()));
  *address = net::HostPort{hp->host, port}.ToString();
  log::Info("gRPC health-only listener", {{"address", *address}});
  return server;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                                      const std::vector<grpc::Service*>& services) {
  auto hp = net::ParseHostPort(options.listen);
  if (!hp.ok()) return absl::InvalidArgumentError(absl::StrCat("--listen: ", hp.status().message()));
  if (hp->port != 0) {
    absl::Status free = net::CheckPortFree(*hp);
    if (!free.ok()) return absl::UnavailableError(absl::StrCat("gRPC listener: ", free.message()));
  }
  ASSIGN_OR_RETURN(auto creds, Credentials(options));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::unique_ptr<Server> out(new Server());
  builder.AddListeningPort(hp->ToString(), creds, &out->port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  for (grpc::Service* s : services) builder.RegisterService(s);
  if (options.registry) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(std::make_unique<MetricsInterceptorFactory>(*options.registry));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  out->server_ = builder.BuildAndStart();
  if (out->server_ == nullptr || out->port_ == 0)
    return absl::UnavailableError(absl::StrCat("gRPC listener: cannot listen on ", hp->ToString()));
  out->address_ = net::HostPort{hp->host, out->port_}.ToString();
  if (!options.health_listen.empty()) {
    ASSIGN_OR_RETURN(out->health_server_, StartHealthOnly(options.health_listen, &out->health_address_));
  }
  out->SetServing(true);
  log::Info("gRPC serving", {{"service", options.service_name}, {"address", out->address_},
                             {"tls", !options.tls_cert_file.empty()}, {"mtls", !options.tls_client_ca_file.empty()},
                             {"tls_reload", absl::FormatDuration(options.tls_reload_interval)},
                             {"peer_acl_rules", static_cast<int>(options.peer_acl.size())}});
  return out;
}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

void Server::SetServing(bool serving) {
  for (grpc::Server* server : {server_.get(), health_server_.get()}) {
    if (server == nullptr) continue;
    auto* health = server->GetHealthCheckService();
    if (health != nullptr) health->SetServingStatus(serving);
  }
}

void Server::Shutdown(absl::Duration grace) {
  if (server_ == nullptr || shut_down_) return;
  shut_down_ = true;
  SetServing(false);
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(grace));
  server_->Wait();
  // The probe port goes last, so probes see NOT_SERVING during the drain.
  if (health_server_ != nullptr) {
    health_server_->Shutdown(std::chrono::system_clock::now());
    health_server_->Wait();
  }
}

}  // namespace mailgrid::rpc
