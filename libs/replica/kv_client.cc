#include "libs/replica/kv_client.h"

#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "libs/replica/channel.h"
#include "libs/replica/kv_service.h"
#include "libs/rpc/status.h"

namespace mailgrid::replica {
namespace {

std::string RandomClientId() {
  std::random_device rd;
  std::string bytes(16, '\0');
  for (char& c : bytes) c = static_cast<char>(rd() & 0xff);
  return absl::BytesToHexString(bytes);
}

// The NOT_LEADER hint of a failed call, if it carries one.
std::optional<kv::v1::NotLeader> Redirect(const grpc::ClientContext& ctx) {
  const auto& md = ctx.GetServerTrailingMetadata();
  auto it = md.find(kNotLeaderMetadata);
  if (it == md.end()) return std::nullopt;
  kv::v1::NotLeader hint;
  if (!hint.ParseFromArray(it->second.data(), static_cast<int>(it->second.size()))) {
    return std::nullopt;
  }
  return hint;
}

absl::Duration Jitter(absl::Duration d) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  double f = std::uniform_real_distribution<double>(0.5, 1.0)(rng);
  return d * f;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseAddressList(std::string_view list) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(ToAbsl(list), ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  if (out.empty()) return absl::InvalidArgumentError("replica addresses: empty list");
  return out;
}

absl::StatusOr<std::unique_ptr<KvClient>> KvClient::Create(KvClientOptions options) {
  if (options.addresses.empty()) return absl::InvalidArgumentError("replica addresses: empty list");
  if (options.client_id.empty()) options.client_id = RandomClientId();
  std::unique_ptr<KvClient> client(new KvClient(std::move(options)));
  // Fails now, not at the first call, when a TLS file is unreadable.
  for (const std::string& address : client->options_.addresses) {
    RETURN_IF_ERROR(client->Stub(address).status());
  }
  return client;
}

absl::StatusOr<std::unique_ptr<KvClient>> KvClient::Create(std::string_view addresses) {
  KvClientOptions options;
  auto parsed = ParseAddressList(addresses);
  if (!parsed.ok()) return parsed.status();
  options.addresses = std::move(*parsed);
  return Create(std::move(options));
}

kv::v1::RequestId KvClient::NextRequestId() {
  kv::v1::RequestId id;
  id.set_client_id(options_.client_id);
  id.set_seq(seq_.fetch_add(1) + 1);
  return id;
}

std::string KvClient::leader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

absl::StatusOr<std::shared_ptr<kv::v1::KvService::Stub>> KvClient::Stub(
    const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto& stub = stubs_[address];
  if (stub == nullptr) {
    ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                     MakeReplicaChannel(address, options_.tls));
    stub = kv::v1::KvService::NewStub(channel);
  }
  return stub;
}

std::string KvClient::PickTarget(size_t* rotation) {
  {
    absl::MutexLock lock(&mu_);
    if (!leader_.empty()) return leader_;
  }
  return options_.addresses[(*rotation)++ % options_.addresses.size()];
}

absl::Status KvClient::Call(const Attempt& attempt, absl::Duration timeout, bool is_write) {
  const absl::Time deadline = absl::Now() + timeout;
  thread_local std::mt19937_64 rng(std::random_device{}());
  size_t rotation = std::uniform_int_distribution<size_t>(0, options_.addresses.size() - 1)(rng);
  absl::Duration backoff = absl::Milliseconds(20);
  std::string target = PickTarget(&rotation);
  absl::Status last = absl::UnavailableError("no replica answered");
  int redirects = 0;  // in a row, without a pause: stale hints may ping-pong
  while (true) {
    absl::Time now = absl::Now();
    if (now >= deadline) break;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(std::min(deadline, now + options_.attempt_timeout)));
    absl::StatusOr<std::shared_ptr<kv::v1::KvService::Stub>> stub = Stub(target);
    if (!stub.ok()) return stub.status();  // unreadable TLS files: retrying cannot help
    grpc::Status s = attempt(stub->get(), &ctx);
    if (s.ok()) {
      absl::MutexLock lock(&mu_);
      leader_ = target;
      return absl::OkStatus();
    }
    last = rpc::FromGrpc(s);
    std::optional<kv::v1::NotLeader> hint = Redirect(ctx);
    // RESOURCE_EXHAUSTED (disk full) is one replica's answer: it stalled and
    // stepped aside, and the others may well elect a leader that can write.
    // So it is retried elsewhere like UNAVAILABLE; at the deadline its
    // message ("disk full ...") is in the error returned.
    if (hint.has_value() || s.error_code() == grpc::StatusCode::UNAVAILABLE ||
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
        s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      // Forget a leader that is not one (any more).
      {
        absl::MutexLock lock(&mu_);
        if (leader_ == target) leader_.clear();
        // And, when it could not be reached, the channel: a fresh one next
        // time. Seen with TLS (gRPC 1.51): a channel whose first connection
        // attempt failed (replica not up yet) kept failing its handshakes
        // after the replica came up; a new channel connected at once.
        if (s.error_code() == grpc::StatusCode::UNAVAILABLE && !hint.has_value()) {
          stubs_.erase(target);
        }
      }
      if (hint.has_value() && !hint->leader_address().empty() && hint->leader_address() != target &&
          ++redirects <= 3) {
        target = hint->leader_address();  // redirect: go there at once
        continue;
      }
      redirects = 0;
      absl::Duration pause = std::min(Jitter(backoff), deadline - absl::Now());
      if (pause > absl::ZeroDuration()) absl::SleepFor(pause);
      backoff = std::min(backoff * 2, absl::Seconds(1));
      target = PickTarget(&rotation);
      continue;
    }
    return last;  // a definite answer: bad request, data loss...
  }
  if (is_write) {
    return absl::DeadlineExceededError(
        absl::StrCat("write outcome unknown: no acknowledgement before the deadline (last error: ",
                     last.ToString(), ")"));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("no replica answered before the deadline (last error: ", last.ToString(), ")"));
}

absl::StatusOr<kv::v1::WriteResponse> KvClient::Write(kv::v1::WriteRequest request) {
  return Write(std::move(request), options_.timeout);
}

absl::StatusOr<kv::v1::WriteResponse> KvClient::Write(kv::v1::WriteRequest request,
                                                      absl::Duration timeout) {
  if (request.request_id().client_id().empty()) *request.mutable_request_id() = NextRequestId();
  kv::v1::WriteResponse resp;
  absl::Status s = Call([&](kv::v1::KvService::Stub* stub,
                            grpc::ClientContext* ctx) { return stub->Write(ctx, request, &resp); },
                        timeout, /*is_write=*/true);
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<kv::v1::GetResponse> KvClient::Get(const kv::v1::GetRequest& request) {
  return Get(request, options_.timeout);
}

absl::StatusOr<kv::v1::GetResponse> KvClient::Get(const kv::v1::GetRequest& request,
                                                  absl::Duration timeout) {
  kv::v1::GetResponse resp;
  absl::Status s = Call([&](kv::v1::KvService::Stub* stub,
                            grpc::ClientContext* ctx) { return stub->Get(ctx, request, &resp); },
                        timeout, /*is_write=*/false);
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<kv::v1::ScanResponse> KvClient::Scan(const kv::v1::ScanRequest& request) {
  return Scan(request, options_.timeout);
}

absl::StatusOr<kv::v1::ScanResponse> KvClient::Scan(const kv::v1::ScanRequest& request,
                                                    absl::Duration timeout) {
  kv::v1::ScanResponse resp;
  absl::Status s = Call([&](kv::v1::KvService::Stub* stub,
                            grpc::ClientContext* ctx) { return stub->Scan(ctx, request, &resp); },
                        timeout, /*is_write=*/false);
  if (!s.ok()) return s;
  return resp;
}

}  // namespace mailgrid::replica
