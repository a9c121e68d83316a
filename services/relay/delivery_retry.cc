#include "services/relay/delivery_retry.h"

#include <algorithm>
#include <atomic>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"

namespace mailgrid::relay {
namespace {

namespace v1 = mailstore::v1;

// Indexes of the recipients worth asking again.
std::vector<int> TemporaryFailures(const v1::DeliverBatchResponse& resp) {
  std::vector<int> out;
  for (int i = 0; i < resp.results_size(); ++i)
    if (resp.results(i).status() == v1::DELIVERY_STATUS_TEMPORARY_FAILURE) out.push_back(i);
  return out;
}

// The same delivery (id, message, date) for `which` recipients only.
v1::DeliverBatchRequest Subset(const v1::DeliverBatchRequest& request,
                               const std::vector<int>& which) {
  v1::DeliverBatchRequest out;
  out.set_delivery_id(request.delivery_id());
  out.set_message(request.message());
  *out.mutable_internal_date() = request.internal_date();
  for (int i : which) *out.add_recipients() = request.recipients(i);
  return out;
}

absl::Duration Jittered(absl::Duration pause) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::uniform_real_distribution<double> factor(0.75, 1.25);
  return pause * factor(rng);
}

// A stalled shard fails every delivery in flight at once: one warning per
// second at most per process; the next one says how many were left out.
// Returns -1 when this one is to be left out, else that count.
int64_t WarningAllowed() {
  static std::atomic<int64_t> last_ms{0};
  static std::atomic<int64_t> suppressed{0};
  int64_t now = absl::ToUnixMillis(absl::Now());
  int64_t last = last_ms.load(std::memory_order_relaxed);
  if (now - last < 1000 || !last_ms.compare_exchange_strong(last, now)) {
    suppressed.fetch_add(1, std::memory_order_relaxed);
    return -1;
  }
  return suppressed.exchange(0);
}

void WarnTemporary(uint32_t shard, const v1::DeliverBatchRequest& request,
                   const v1::DeliverBatchResponse& resp, const std::vector<int>& failed,
                   absl::Duration spent, bool giving_up) {
  int64_t suppressed = WarningAllowed();
  if (suppressed < 0) return;
  const v1::DeliveryResult& first = resp.results(failed.front());
  log::Warn(giving_up ? "DeliverBatch: recipients still failing temporarily, giving up"
                      : "DeliverBatch: recipients failed temporarily, retrying",
            {{"shard", static_cast<unsigned>(shard)},
             {"delivery_id", request.delivery_id().substr(0, 16)},
             {"recipients", static_cast<unsigned long>(failed.size())},
             {"mailbox", first.mailbox_id()},
             {"detail", first.detail()},
             {"spent_ms", static_cast<long long>(absl::ToInt64Milliseconds(spent))},
             {"suppressed", static_cast<long long>(suppressed)}});
}

void WarnRetryFailed(uint32_t shard, const v1::DeliverBatchRequest& request,
                     const absl::Status& status, absl::Duration spent) {
  int64_t suppressed = WarningAllowed();
  if (suppressed < 0) return;
  log::Warn("DeliverBatch retry failed, giving up",
            {{"shard", static_cast<unsigned>(shard)},
             {"delivery_id", request.delivery_id().substr(0, 16)},
             {"status", status},
             {"spent_ms", static_cast<long long>(absl::ToInt64Milliseconds(spent))},
             {"suppressed", static_cast<long long>(suppressed)}});
}

}  // namespace

absl::StatusOr<v1::DeliverBatchResponse> DeliverWithRetry(Backend& backend, uint32_t shard,
                                                          const v1::DeliverBatchRequest& request,
                                                          const std::optional<DeliveryRetry>& given) {
  const DeliveryRetry retry = given.value_or(backend.delivery_retry());
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::DeliverBatchResponse> out = backend.Deliver(shard, request);
  // A short answer is the caller's to judge (it counts as temporary there).
  if (!out.ok() || out->results_size() != request.recipients_size()) return out;
  absl::Duration pause = retry.first_pause;
  for (std::vector<int> failed = TemporaryFailures(*out); !failed.empty();
       failed = TemporaryFailures(*out)) {
    absl::Duration wait = Jittered(pause);
    bool giving_up = absl::Now() + wait >= start + retry.budget;
    WarnTemporary(shard, request, *out, failed, absl::Now() - start, giving_up);
    if (giving_up) break;
    absl::SleepFor(wait);
    pause = std::min(pause * 2, retry.max_pause);
    absl::StatusOr<v1::DeliverBatchResponse> again =
        backend.Deliver(shard, Subset(request, failed));
    if (!again.ok() || again->results_size() != static_cast<int>(failed.size())) {
      WarnRetryFailed(shard, request,
                      again.ok() ? absl::UnavailableError("short answer") : again.status(),
                      absl::Now() - start);
      break;
    }
    for (size_t k = 0; k < failed.size(); ++k)
      *out->mutable_results(failed[k]) = std::move(*again->mutable_results(static_cast<int>(k)));
  }
  return out;
}

}  // namespace mailgrid::relay
