#include "libs/rpc/client.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "libs/base/status.h"
#include "libs/rpc/tls_watch.h"

namespace mailgrid::rpc {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& what, const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(what, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string RetryServiceConfig(const std::vector<std::string>& services, int max_attempts) {
  std::vector<std::string> names;
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const std::string& service : services) {
    const auto* sd = pool->FindServiceByName(service);
    if (sd == nullptr) continue;
    for (int i = 0; i < sd->method_count(); ++i) {
      const auto* md = sd->method(i);
      if (md->options().idempotency_level() == google::protobuf::MethodOptions::IDEMPOTENCY_UNKNOWN) continue;
      names.push_back(absl::StrCat(R"({"service":")", service, R"(","method":")", md->name(), R"("})"));
    }
  }
  if (names.empty()) return "";
  return absl::StrCat(R"({"methodConfig":[{"name":[)", absl::StrJoin(names, ","),
                      R"(],"retryPolicy":{"maxAttempts":)", max_attempts,
                      R"(,"initialBackoff":"0.05s","maxBackoff":"1s","backoffMultiplier":2,)",
                      R"("retryableStatusCodes":["UNAVAILABLE"]}}]})");
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ClientOptions& o) {
  if (o.target.empty()) return absl::InvalidArgumentError("gRPC target is empty");
  std::shared_ptr<grpc::ChannelCredentials> creds;
  grpc::ChannelArguments args;
  if (o.tls_ca_file.empty()) {
    if (!o.tls_cert_file.empty()) return absl::InvalidArgumentError("a client certificate needs a CA (--tls-ca)");
    creds = grpc::InsecureChannelCredentials();
  } else if (o.tls_reload_interval <= absl::ZeroDuration()) {
    grpc::SslCredentialsOptions ssl;
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile("--tls-ca", o.tls_ca_file));
    if (!o.tls_cert_file.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadFile("--tls-cert", o.tls_cert_file));
      ASSIGN_OR_RETURN(ssl.pem_private_key, ReadFile("--tls-key", o.tls_key_file));
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    // Checked here so a bad path is an error naming it, not a channel that
    // never connects (the watcher only logs).
    RETURN_IF_ERROR(ReadPemFile("tls-ca", o.tls_ca_file).status());
    if (!o.tls_cert_file.empty() || !o.tls_key_file.empty()) {
      RETURN_IF_ERROR(CheckKeyPair("tls-cert", o.tls_cert_file, "tls-key", o.tls_key_file));
    }
    grpc::experimental::TlsChannelCredentialsOptions tls;
    tls.set_certificate_provider(
        WatchedCertificates(o.tls_key_file, o.tls_cert_file, o.tls_ca_file, o.tls_reload_interval));
    tls.watch_root_certs();
    if (!o.tls_cert_file.empty()) tls.watch_identity_key_cert_pairs();
    // gRPC's default verifier checks the server's name (the target host, or
    // tls_server_name below) against its certificate, as SslCredentials does.
    tls.set_verify_server_certs(true);
    creds = grpc::experimental::TlsCredentials(tls);
  }
  if (!o.tls_ca_file.empty() && !o.tls_server_name.empty()) args.SetSslTargetNameOverride(o.tls_server_name);
  args.SetMaxReceiveMessageSize(o.max_message_bytes);
  args.SetMaxSendMessageSize(o.max_message_bytes);
  // ChannelArguments keeps duplicates and gRPC uses the first, so a default
  // is only set when channel_int_args does not override it.
  auto set_default = [&](const std::string& name, int value) {
    for (const auto& arg : o.channel_int_args) {
      if (arg.first == name) return;
    }
    args.SetInt(name, value);
  };
  set_default(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  // gRPC's retry filter costs every call on the channel (client.h).
  std::string config = RetryServiceConfig(o.services, o.max_attempts);
  set_default(GRPC_ARG_ENABLE_RETRIES, config.empty() && !o.transparent_retries ? 0 : 1);
  set_default(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(std::max(o.min_reconnect_backoff, o.connect_timeout))));
  set_default(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, static_cast<int>(absl::ToInt64Milliseconds(o.min_reconnect_backoff)));
  set_default(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(absl::ToInt64Milliseconds(o.max_reconnect_backoff)));
  for (const auto& [name, value] : o.channel_int_args) args.SetInt(name, value);
  if (!config.empty()) args.SetServiceConfigJSON(config);
  return grpc::CreateCustomChannel(o.target, creds, args);
}

std::unique_ptr<grpc::ClientContext> ContextWithDeadline(absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  return ctx;
}

}  // namespace mailgrid::rpc
