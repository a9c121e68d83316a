// CredentialService: initial passwords (from tenantd), admin reset, status,
// the tenant's policy, app passwords, security questions, lockouts.
#include <sodium.h>

#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/base/status.h"
#include "services/identity/core.h"
#include "services/identity/errors.h"

namespace mailgrid::identity {

std::string AppPasswordHash(const std::string& user_id, std::string_view password);

namespace {

std::string RandomLetters(size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out.push_back(static_cast<char>('a' + randombytes_uniform(26)));
  return out;
}

// A generated password: 20 characters from an unambiguous alphabet.
std::string GeneratedPassword() {
  static const char kAlphabet[] = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  std::string out;
  for (int i = 0; i < 20; ++i) out.push_back(kAlphabet[randombytes_uniform(sizeof(kAlphabet) - 1)]);
  return out;
}

// Security answers: case-folded (ASCII), whitespace collapsed and trimmed.
// (NFKC normalisation is not applied yet: see README.)
std::string NormaliseAnswer(std::string_view answer) {
  std::string out;
  bool space = false;
  for (char ch : answer) {
    if (absl::ascii_isspace(static_cast<unsigned char>(ch))) {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(absl::ascii_tolower(static_cast<unsigned char>(ch)));
  }
  return out;
}

}  // namespace

absl::StatusOr<v1::SetInitialPasswordResponse> Core::SetInitialPassword(
    const Caller& c, const v1::SetInitialPasswordRequest& r) {
  if (!c.service()) return c.anonymous() ? Unauthenticated() : PermissionDenied("service-internal");
  // Every entry is checked before anything is set.
  for (int i = 0; i < r.entries_size(); ++i) {
    const auto& e = r.entries(i);
    std::string field = absl::StrCat("entries[", i, "].password");
    if (e.tenant_id().empty() || e.user_id().empty())
      return InvalidField(absl::StrCat("entries[", i, "]"), "EMPTY",
                          "tenant_id and user_id are required");
    ASSIGN_OR_RETURN(auto policy, store_->GetPolicy(e.tenant_id()));
    RETURN_IF_ERROR(CheckNewPassword(policy.first, e.password(), common_, field));
  }
  // Hash in parallel (the hasher's semaphore bounds the memory).
  std::vector<absl::StatusOr<std::string>> phcs(r.entries_size(), absl::UnknownError("not run"));
  {
    std::vector<std::thread> threads;
    int n = std::min(r.entries_size(), 4);
    for (int w = 0; w < n; ++w) {
      threads.emplace_back([&, w] {
        for (int i = w; i < r.entries_size(); i += n) {
          // Idempotent per (user, password): the same password again keeps
          // the stored hash.
          auto existing = store_->GetCredential(r.entries(i).tenant_id(), r.entries(i).user_id());
          if (existing.ok() && !existing->password_phc().empty() &&
              hasher_->Verify(existing->password_phc(), r.entries(i).password())) {
            phcs[i] = existing->password_phc();
          } else {
            phcs[i] = hasher_->Hash(r.entries(i).password());
          }
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  for (int i = 0; i < r.entries_size(); ++i) {
    RETURN_IF_ERROR(phcs[i].status());
    const auto& e = r.entries(i);
    RETURN_IF_ERROR(
        store_->Mutate(e.tenant_id(), e.user_id(), [&](storage::Credential& cred, bool) {
          if (cred.password_phc() == *phcs[i] && cred.must_change() == e.must_change())
            return absl::OkStatus();
          cred.set_password_phc(*phcs[i]);
          cred.set_must_change(e.must_change());
          cred.set_change_reason(e.must_change() ? v1::PASSWORD_CHANGE_REASON_INITIAL : 0);
          cred.set_password_changed_at(absl::ToUnixSeconds(absl::Now()));
          return absl::OkStatus();
        }));
  }
  return v1::SetInitialPasswordResponse();
}

absl::StatusOr<v1::DeleteCredentialsResponse> Core::DeleteCredentials(
    const Caller& c, const v1::DeleteCredentialsRequest& r) {
  if (!c.service()) return c.anonymous() ? Unauthenticated() : PermissionDenied("service-internal");
  auto tenant = store_->TenantOfUser(r.user_id());
  if (tenant.ok()) {
    RETURN_IF_ERROR(store_->DeleteCredential(*tenant, r.user_id()));
  } else if (!absl::IsNotFound(tenant.status())) {
    return tenant.status();
  }
  (void)sessions_->EndAll(r.user_id());
  return v1::DeleteCredentialsResponse();
}

absl::StatusOr<v1::AdminResetPasswordResponse> Core::AdminResetPassword(
    const Caller& c, const v1::AdminResetPasswordRequest& r) {
  ASSIGN_OR_RETURN(Target t, ResolveTarget(c, r.user_id(), false, true, false));
  ASSIGN_OR_RETURN(auto policy, store_->GetPolicy(t.tenant_id));
  v1::AdminResetPasswordResponse out;
  std::string password = r.new_password();
  if (password.empty()) {
    password = GeneratedPassword();
    out.set_generated_password(password);
  } else {
    RETURN_IF_ERROR(CheckNewPassword(policy.first, password, common_, "new_password"));
  }
  ASSIGN_OR_RETURN(std::string phc, hasher_->Hash(password));
  RETURN_IF_ERROR(StorePassword(t.tenant_id, t.user_id, phc, true,
                                v1::PASSWORD_CHANGE_REASON_ADMIN_RESET,
                                policy.first.history_count()));
  ASSIGN_OR_RETURN(int64_t ended, sessions_->EndAll(t.user_id));
  out.set_sessions_ended(ended);
  Event(t.tenant_id, t.user_id, "", v1::AUTH_EVENT_KIND_ADMIN_PASSWORD_RESET,
        v1::AUTH_OUTCOME_SUCCESS, "", ClientOf(c, {}), r.reason().substr(0, 200), &c);
  NotifyUser(SecurityEvent::kAdminPasswordReset, t.tenant_id, t.user_id, ClientOf(c, {}), true);
  return out;
}

absl::StatusOr<v1::CredentialStatus> Core::GetCredentialStatus(
    const Caller& c, const v1::GetCredentialStatusRequest& r) {
  ASSIGN_OR_RETURN(Target t, ResolveTarget(c, r.user_id(), true, true, false));
  ASSIGN_OR_RETURN(auto cred, store_->GetCredential(t.tenant_id, t.user_id));
  ASSIGN_OR_RETURN(auto policy, store_->GetPolicy(t.tenant_id));
  v1::CredentialStatus out;
  out.set_user_id(t.user_id);
  out.set_password_set(!cred.password_phc().empty());
  out.set_must_change_password(cred.must_change());
  out.mutable_password_changed_at()->set_seconds(cred.password_changed_at());
  if (policy.first.max_password_age_days() > 0)
    out.mutable_password_expires_at()->set_seconds(
        cred.password_changed_at() + int64_t{86400} * policy.first.max_password_age_days());
  out.set_totp_enabled(!cred.totp_secret().empty());
  int remaining = 0;
  for (const auto& rc : cred.recovery_codes()) remaining += rc.used() ? 0 : 1;
  out.set_recovery_codes_remaining(remaining);
  out.set_security_questions_set(cred.security_answers_size() > 0);
  out.set_app_password_count(cred.app_passwords_size());
  auto principal = directory_->ByUserId(t.user_id);
  if (principal.ok()) {
    auto locked = throttle_->LockedUntil(principal->user().address());
    if (locked.ok() && locked->has_value())
      out.mutable_locked_until()->set_seconds(absl::ToUnixSeconds(**locked));
  }
  return out;
}

absl::StatusOr<v1::PasswordPolicy> Core::GetPasswordPolicy(const Caller& c,
                                                           const v1::GetPasswordPolicyRequest& r) {
  if (c.anonymous()) return Unauthenticated();
  std::string tid = r.tenant_id().empty() ? c.claims.tenant_id : r.tenant_id();
  if (!c.service() && !c.platform_operator() && c.claims.tenant_id != tid)
    return NotFound("tenant");
  ASSIGN_OR_RETURN(auto policy, store_->GetPolicy(tid));
  return policy.first;
}

absl::StatusOr<v1::PasswordPolicy> Core::SetPasswordPolicy(const Caller& c,
                                                           const v1::SetPasswordPolicyRequest& r) {
  std::string tid = r.policy().tenant_id().empty() ? c.claims.tenant_id : r.policy().tenant_id();
  RETURN_IF_ERROR(RequireTenantRole(c, tid, true, false));
  RETURN_IF_ERROR(ValidatePolicy(r.policy()));
  v1::PasswordPolicy p = r.policy();
  p.set_tenant_id(tid);
  ASSIGN_OR_RETURN(auto stored, store_->PutPolicy(p, r.expected_version()));
  Event(tid, "", "", v1::AUTH_EVENT_KIND_POLICY_CHANGED, v1::AUTH_OUTCOME_SUCCESS, "",
        ClientOf(c, {}), "", &c);
  return stored;
}

absl::StatusOr<v1::CreateAppPasswordResponse> Core::CreateAppPassword(
    const Caller& c, const v1::CreateAppPasswordRequest& r) {
  ASSIGN_OR_RETURN(Target t, ResolveTarget(c, "", true, false, false));
  if (r.name().empty()) return InvalidField("name", "EMPTY", "a name is required");
  if (CodePoints(r.name()) > 100 || !IsUtf8(r.name()))
    return InvalidField("name", "TOO_LONG", "at most 100 characters");
  for (int p : r.protocols())
    if (p != common::v1::PROTOCOL_IMAP && p != common::v1::PROTOCOL_POP3 &&
        p != common::v1::PROTOCOL_SMTP)
      return InvalidField("protocols", "NOT_MAIL", "only IMAP, POP3 and SMTP");
  ASSIGN_OR_RETURN(auto policy, store_->GetPolicy(t.tenant_id));
  if (policy.first.sso_mandatory() && !policy.first.allow_app_passwords_under_sso())
    return Precondition("APP_PASSWORDS_DISABLED", "app passwords are disabled under mandatory SSO");
  std::string letters = RandomLetters(16);
  v1::CreateAppPasswordResponse out;
  out.set_password(absl::StrCat(letters.substr(0, 4), " ", letters.substr(4, 4), " ",
                                letters.substr(8, 4), " ", letters.substr(12, 4)));
  storage::AppPasswordRecord rec;
  rec.set_id(absl::StrCat("ap-", RandomToken(9)));
  rec.set_name(r.name());
  rec.set_hash(AppPasswordHash(t.user_id, letters));
  rec.set_created_at(absl::ToUnixSeconds(absl::Now()));
  for (int p : r.protocols()) rec.add_protocols(p);
  RETURN_IF_ERROR(
      store_->Mutate(t.tenant_id, t.user_id, [&](storage::Credential& cred, bool exists) {
        if (!exists) return NotFound("user");
        if (cred.app_passwords_size() >= 20)
          return absl::ResourceExhaustedError("at most 20 app passwords per user");
        *cred.add_app_passwords() = rec;
        return absl::OkStatus();
      }));
  auto* ap = out.mutable_app_password();
  ap->set_app_password_id(rec.id());
  ap->set_name(rec.name());
  ap->mutable_created_at()->set_seconds(rec.created_at());
  for (int p : rec.protocols()) ap->add_protocols(static_cast<common::v1::Protocol>(p));
  Event(t.tenant_id, t.user_id, c.claims.address, v1::AUTH_EVENT_KIND_APP_PASSWORD_CREATED,
        v1::AUTH_OUTCOME_SUCCESS, "", ClientOf(c, {}), rec.name());
  NotifyUser(SecurityEvent::kAppPasswordCreated, t.tenant_id, t.user_id, ClientOf(c, {}), false,
             rec.name());
  return out;
}

absl::StatusOr<v1::ListAppPasswordsResponse> Core::ListAppPasswords(
    const Caller& c, const v1::ListAppPasswordsRequest& r) {
  ASSIGN_OR_RETURN(Target t, ResolveTarget(c, r.user_id(), true, true, false));
  ASSIGN_OR_RETURN(auto cred, store_->GetCredential(t.tenant_id, t.user_id));
  v1::ListAppPasswordsResponse out;
  for (const auto& rec : cred.app_passwords()) {
    auto* ap = out.add_app_passwords();
    ap->set_app_password_id(rec.id());
    ap->set_name(rec.name());
    ap->mutable_created_at()->set_seconds(rec.created_at());
    if (rec.last_used_at() > 0) ap->mutable_last_used_at()->set_seconds(rec.last_used_at());
    ap->set_last_used_ip(rec.last_used_ip());
    for (int p : rec.protocols()) ap->add_protocols(static_cast<common::v1::Protocol>(p));
  }
  return out;
}

absl::StatusOr<v1::RevokeAppPasswordResponse> Core::RevokeAppPassword(
    const Caller& c, const v1::RevokeAppPasswordRequest& r) {
  // The user's own app passwords (admins revoke by resetting the user).
  ASSIGN_OR_RETURN(Target t, ResolveTarget(c, "", true, false, false));
  bool found = false;
  std::string name;  // for the notice: the user knows it by its name
  absl::Status s = store_->Mutate(t.tenant_id, t.user_id, [&](storage::Credential& cred, bool) {
    auto* list = cred.mutable_app_passwords();
    for (int i = 0; i < list->size(); ++i) {
      if (list->Get(i).id() == r.app_password_id()) {
        name = list->Get(i).name();
        list->DeleteSubrange(i, 1);
        found = true;
        return absl::OkStatus();
      }
    }
    return absl::CancelledError("none");
  });
  if (!s.ok() && !absl::IsCancelled(s)) return s;
  if (!found) return NotFound("app password");
  Event(t.tenant_id, t.user_id, c.claims.address, v1::AUTH_EVENT_KIND_APP_PASSWORD_REVOKED,
        v1::AUTH_OUTCOME_SUCCESS, "", ClientOf(c, {}), r.app_password_id());
  NotifyUser(SecurityEvent::kAppPasswordRevoked, t.tenant_id, t.user_id, ClientOf(c, {}), false,
             name);
  return v1::RevokeAppPasswordResponse();
}

absl::StatusOr<v1::SetSecurityQuestionsResponse> Core::SetSecurityQuestions(
    const Caller& c, const v1::SetSecurityQuestionsRequest& r) {
  ASSIGN_OR_RETURN(Target t, ResolveTarget(c, "", true, false, false));
  ASSIGN_OR_RETURN(auto policy, store_->GetPolicy(t.tenant_id));
  if (!policy.first.security_questions_enabled())
    return Precondition("DISABLED_BY_POLICY", "security questions are not enabled for this tenant");
  if (r.questions_size() < 2 || r.questions_size() > 5)
    return InvalidField("questions", "COUNT", "between 2 and 5 questions");
  for (int i = 0; i < r.questions_size(); ++i) {
    const auto& q = r.questions(i);
    if (CodePoints(q.question()) < 5 || CodePoints(q.question()) > 200 || !IsUtf8(q.question()))
      return InvalidField(absl::StrCat("questions[", i, "].question"), "LENGTH",
                          "5-200 characters");
    if (CodePoints(NormaliseAnswer(q.answer())) < 3 || q.answer().size() > 1024 ||
        !IsUtf8(q.answer()))
      return InvalidField(absl::StrCat("questions[", i, "].answer"), "TOO_SHORT",
                          "at least 3 characters");
  }
  ASSIGN_OR_RETURN(auto cred, store_->GetCredential(t.tenant_id, t.user_id));
  RETURN_IF_ERROR(CheckReauth(cred, r.reauth()));
  std::vector<storage::SecurityAnswer> answers;
  for (const auto& q : r.questions()) {
    storage::SecurityAnswer a;
    a.set_question(q.question());
    ASSIGN_OR_RETURN(*a.mutable_answer_phc(), hasher_->Hash(NormaliseAnswer(q.answer())));
    answers.push_back(std::move(a));
  }
  RETURN_IF_ERROR(store_->Mutate(t.tenant_id, t.user_id, [&](storage::Credential& cr, bool) {
    cr.clear_security_answers();
    for (const auto& a : answers) *cr.add_security_answers() = a;
    return absl::OkStatus();
  }));
  (void)sessions_->EndOthers(t.user_id, c.claims.session_id);
  Event(t.tenant_id, t.user_id, c.claims.address, v1::AUTH_EVENT_KIND_SECURITY_QUESTIONS_SET,
        v1::AUTH_OUTCOME_SUCCESS, "", ClientOf(c, {}), "");
  NotifyUser(SecurityEvent::kSecurityQuestionsSet, t.tenant_id, t.user_id, ClientOf(c, {}));
  return v1::SetSecurityQuestionsResponse();
}

absl::StatusOr<v1::GetSecurityQuestionsResponse> Core::GetSecurityQuestions(
    const Caller& c, const v1::GetSecurityQuestionsRequest& r) {
  ASSIGN_OR_RETURN(Target t, ResolveTarget(c, r.user_id(), true, true, false));
  ASSIGN_OR_RETURN(auto cred, store_->GetCredential(t.tenant_id, t.user_id));
  v1::GetSecurityQuestionsResponse out;
  for (const auto& a : cred.security_answers()) out.add_questions(a.question());
  return out;
}

// Security answers in order; all must match.
bool SecurityAnswersMatch(PasswordHasher* hasher, const storage::Credential& cred,
                          const google::protobuf::RepeatedPtrField<std::string>& answers) {
  if (cred.security_answers_size() == 0 || answers.size() != cred.security_answers_size())
    return false;
  bool all = true;
  for (int i = 0; i < answers.size(); ++i)
    all = hasher->Verify(cred.security_answers(i).answer_phc(), NormaliseAnswer(answers.Get(i))) &&
          all;
  return all;
}

absl::StatusOr<v1::UnlockAccountResponse> Core::UnlockAccount(const Caller& c,
                                                              const v1::UnlockAccountRequest& r) {
  ASSIGN_OR_RETURN(Target t, ResolveTarget(c, r.user_id(), false, true, false));
  std::string address;
  auto principal = directory_->ByUserId(t.user_id);
  if (principal.ok()) address = principal->user().address();
  if (address.empty()) {
    ASSIGN_OR_RETURN(auto list, throttle_->List(t.tenant_id));
    for (const auto& l : list)
      if (l.user_id() == t.user_id) address = l.address();
  }
  if (address.empty()) return NotFound("user");
  RETURN_IF_ERROR(throttle_->Unlock(address, t.tenant_id, t.user_id));
  Event(t.tenant_id, t.user_id, address, v1::AUTH_EVENT_KIND_UNLOCK, v1::AUTH_OUTCOME_SUCCESS, "",
        ClientOf(c, {}), r.reason().substr(0, 200), &c);
  return v1::UnlockAccountResponse();
}

absl::StatusOr<v1::ListLockoutsResponse> Core::ListLockouts(const Caller& c,
                                                            const v1::ListLockoutsRequest& r) {
  std::string tid = r.tenant_id().empty() ? c.claims.tenant_id : r.tenant_id();
  RETURN_IF_ERROR(RequireTenantRole(c, tid, true, true));
  ASSIGN_OR_RETURN(auto list, throttle_->List(tid));
  v1::ListLockoutsResponse out;
  for (auto& l : list) *out.add_lockouts() = std::move(l);
  out.mutable_page_info()->set_total_size(out.lockouts_size());
  return out;
}

}  // namespace mailgrid::identity
