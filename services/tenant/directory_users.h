// Pieces of user creation shared by CreateUser and ImportUsers
// (directory_users.cc, directory_import.cc).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "mailgrid/tenant/v1/directory.pb.h"

namespace mailgrid::tenant {

// A user to create, as typed (API request or CSV row).
struct UserInput {
  std::string address, display_name, title, phone, password, recovery_email, locale;
  std::vector<common::v1::Role> roles;
  std::vector<std::string> department_ids;
  common::v1::QuotaLimit quota;
  bool has_quota = false;

  static UserInput From(const tenant::v1::CreateUserRequest& r) {
    UserInput in;
    in.address = r.address();
    in.display_name = r.display_name();
    in.title = r.title();
    in.phone = r.phone();
    in.password = r.initial_password();
    in.recovery_email = r.recovery_email();
    in.locale = r.locale();
    for (int role : r.roles()) in.roles.push_back(static_cast<common::v1::Role>(role));
    in.department_ids.assign(r.department_ids().begin(), r.department_ids().end());
    in.has_quota = r.has_quota();
    in.quota = r.quota();
    return in;
  }
};

// The names errors use for each input: API field names, or CSV columns.
struct FieldNames {
  std::string address, display_name, title, phone, roles, department_ids, quota, password,
      recovery_email, locale;
  bool csv = false;
  std::string Indexed(const std::string& base, size_t i) const {
    return csv ? base : absl::StrCat(base, "[", i, "]");
  }
  static FieldNames Api() {
    return {"address", "display_name", "title",          "phone",  "roles",
            "department_ids", "quota",  "initial_password", "recovery_email", "locale", false};
  }
  static FieldNames Csv() {
    return {"address", "name", "title", "phone", "role", "department", "quota_mb",
            "password", "recovery_email", "locale", true};
  }
};

// ALREADY_EXISTS `field` for a taken address.
absl::Status AddressTaken(const std::string& field, const std::string& address);
// The address key (directory_store.h) of a canonical address.
std::string KeyOfAddress(const std::string& address);

}  // namespace mailgrid::tenant
