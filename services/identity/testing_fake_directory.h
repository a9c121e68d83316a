// Test-only: an in-memory Directory (never linked into identityd).
#pragma once

#include <map>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/synchronization/mutex.h"
#include "services/identity/directory.h"
#include "services/identity/errors.h"

namespace mailgrid::identity::testing {

class FakeDirectory final : public Directory {
 public:
  // Adds an ACTIVE user of an ACTIVE tenant with one mailbox.
  tenant::v1::Principal& Add(const std::string& tenant_id, const std::string& user_id,
                             const std::string& address, std::vector<common::v1::Role> roles = {}) {
    absl::MutexLock lock(&mu_);
    tenant::v1::Principal p;
    auto* u = p.mutable_user();
    u->set_tenant_id(tenant_id);
    u->set_user_id(user_id);
    u->set_address(address);
    u->set_state(tenant::v1::USER_STATE_ACTIVE);
    u->add_roles(common::v1::ROLE_USER);
    for (auto r : roles) u->add_roles(r);
    u->set_mailbox_id("mbx-" + user_id);
    p.set_tenant_state(tenant::v1::TENANT_STATE_ACTIVE);
    auto* m = p.add_mailboxes();
    m->set_mailbox_id("mbx-" + user_id);
    m->set_address(address);
    m->set_kind(common::v1::MAILBOX_KIND_USER);
    by_id_[user_id] = p;
    return by_id_[user_id];
  }
  void SetState(const std::string& user_id, tenant::v1::UserState state) {
    absl::MutexLock lock(&mu_);
    by_id_[user_id].mutable_user()->set_state(state);
  }
  absl::StatusOr<tenant::v1::Principal> ByAddress(const std::string& address) override {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, p] : by_id_)
      if (absl::AsciiStrToLower(p.user().address()) == absl::AsciiStrToLower(address)) return p;
    return absl::NotFoundError("no such address");
  }
  // A VERIFIED domain of `tenant_id`.
  void AddDomain(const std::string& domain, const std::string& tenant_id) {
    absl::MutexLock lock(&mu_);
    domains_[domain] = tenant_id;
  }
  absl::StatusOr<std::string> TenantOfDomain(const std::string& domain) override {
    absl::MutexLock lock(&mu_);
    auto it = domains_.find(domain);
    if (it == domains_.end()) return absl::NotFoundError("no such domain");
    return it->second;
  }
  absl::StatusOr<tenant::v1::Principal> ByUserId(const std::string& user_id) override {
    absl::MutexLock lock(&mu_);
    auto it = by_id_.find(user_id);
    if (it == by_id_.end()) return absl::NotFoundError("no such user");
    return it->second;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, tenant::v1::Principal> by_id_;
  std::map<std::string, std::string> domains_;
};

}  // namespace mailgrid::identity::testing
