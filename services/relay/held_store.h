// Mail held for a moderated group or by the audit policy (audit_holds.h): the decision record
// next to its queue entry (held_id = queue_id; the entry is queued HELD
// with hold_reason "moderation", so no runner touches it until a decision).
//   G("outq_held")     / held_id -> relay.v1.HeldMessage
//   G("outq_held_mod") / held_id -> moderator user ids, comma-separated
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/store/store.h"
#include "mailgrid/relay/v1/relay.pb.h"

namespace mailgrid::relay {

struct HeldRecord {
  v1::HeldMessage held;
  std::vector<std::string> moderators;  // user ids that may decide
};

class HeldStore {
 public:
  explicit HeldStore(store::Store* store) : store_(store) {}
  absl::Status Put(const HeldRecord& record);
  // NOT_FOUND when absent.
  absl::StatusOr<HeldRecord> Get(const std::string& held_id);
  // Every record (oldest first: ids are queue ids, creation-time ordered).
  absl::StatusOr<std::vector<HeldRecord>> List();
  // Deletes a record (decided ones, after a while).
  absl::Status Remove(const std::string& held_id);

 private:
  store::Store* store_;
};

}  // namespace mailgrid::relay
