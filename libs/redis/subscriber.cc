#include "libs/redis/subscriber.h"

#include <sys/socket.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "libs/redis/connection.h"
#include "libs/redis/reply.h"

namespace mailgrid::redis {
namespace {

// Redial quickly after a blip, but do not hammer a Redis that stays down.
constexpr absl::Duration kMinBackoff = absl::Milliseconds(50);
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);

}  // namespace

Subscriber::Subscriber(Options options, std::vector<std::string> channels,
                       MessageCallback on_message, SubscribedCallback on_subscribed)
    : options_(std::move(options)),
      channels_(std::move(channels)),
      on_message_(std::move(on_message)),
      on_subscribed_(std::move(on_subscribed)) {}

Subscriber::~Subscriber() { Stop(); }

absl::Status Subscriber::Start() {
  if (channels_.empty()) return absl::InvalidArgumentError("redis subscriber: no channels");
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) {
    return absl::FailedPreconditionError("redis subscriber: already started or stopped");
  }
  started_ = true;
  thread_ = std::thread([this] { Run().IgnoreError(); });
  return absl::OkStatus();
}

void Subscriber::Stop() {
  std::thread thread;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // Wakes a read blocked on the socket; the fd stays valid because the
    // reader unpublishes it (under mu_) before closing it.
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
    thread = std::move(thread_);
  }
  if (thread.joinable()) thread.join();
}

bool Subscriber::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

bool Subscriber::subscribed() const {
  absl::MutexLock lock(&mu_);
  return subscribed_;
}

absl::Status Subscriber::last_error() const {
  absl::MutexLock lock(&mu_);
  return last_error_;
}

absl::Status Subscriber::Run() {
  if (channels_.empty()) return absl::InvalidArgumentError("redis subscriber: no channels");
  absl::Duration backoff = kMinBackoff;
  while (!stopping()) {
    bool was_subscribed = false;
    absl::Status s = RunOnce(&was_subscribed);
    absl::MutexLock lock(&mu_);
    if (stopping_) break;
    // A subscription that came up means Redis was healthy: start over.
    if (was_subscribed) backoff = kMinBackoff;
    last_error_ = s;
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
  return absl::OkStatus();
}

// Returns why the connection ended; OK only when stopping.
absl::Status Subscriber::RunOnce(bool* was_subscribed) {
  ASSIGN_OR_RETURN(std::unique_ptr<internal::Connection> conn,
                   internal::Connection::Dial(options_));
  // Messages may be hours apart: block. A dead peer is found by TCP
  // keepalive, a Stop() by shutdown(2).
  RETURN_IF_ERROR(conn->SetReadTimeout(absl::InfiniteDuration()));
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::OkStatus();
    fd_ = conn->fd();
  }
  // Declared after `conn`, so it runs before the socket is closed.
  absl::Cleanup unpublish = [this] {
    absl::MutexLock lock(&mu_);
    fd_ = -1;
    subscribed_ = false;
  };

  std::vector<std::string> cmd = {"SUBSCRIBE"};
  cmd.insert(cmd.end(), channels_.begin(), channels_.end());
  RETURN_IF_ERROR(conn->Append(cmd));
  size_t confirmed = 0;
  while (true) {
    ASSIGN_OR_RETURN(Reply reply, conn->Read());
    RETURN_IF_ERROR(StatusFromReply(reply));  // e.g. NOPERM on a channel
    const std::vector<Reply>& e = reply.elements();
    if (e.size() < 3 || !e[0].is_string()) {
      return absl::InternalError(
          absl::StrCat("redis subscriber: unexpected reply ", reply.DebugString()));
    }
    const std::string& kind = e[0].as_string();
    if (kind == "message") {
      if (on_message_) on_message_(e[1].as_string(), e[2].as_string());
    } else if (kind == "subscribe" && ++confirmed == channels_.size()) {
      {
        absl::MutexLock lock(&mu_);
        subscribed_ = true;
      }
      *was_subscribed = true;
      if (on_subscribed_) on_subscribed_();
    }
  }
}

}  // namespace mailgrid::redis
