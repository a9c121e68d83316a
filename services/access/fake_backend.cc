#include "services/access/fake_backend.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "libs/imap/base64.h"

namespace mailgrid::access {
namespace {

std::string Lower(std::string_view s) { return absl::AsciiStrToLower(std::string(s)); }

// Header (with its blank line) and body.
std::pair<std::string, std::string> Split(const std::string& raw) {
  size_t p = raw.find("\r\n\r\n");
  if (p == std::string::npos) return {raw, ""};
  return {raw.substr(0, p + 4), raw.substr(p + 4)};
}

// Unfolded header lines as (name, full line with CRLF).
std::vector<std::pair<std::string, std::string>> Fields(const std::string& header) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find("\r\n", pos);
    if (end == std::string::npos || end == pos) break;
    std::string line = header.substr(pos, end + 2 - pos);
    pos = end + 2;
    if ((line[0] == ' ' || line[0] == '\t') && !out.empty()) {
      out.back().second += line;
      continue;
    }
    size_t colon = line.find(':');
    out.emplace_back(Lower(line.substr(0, colon)), line);
  }
  return out;
}

std::optional<std::string> Field(const std::string& header, std::string_view name) {
  for (const auto& [n, line] : Fields(header)) {
    if (n == name) {
      std::string v = line.substr(line.find(':') + 1);
      while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
      while (!v.empty() && v.front() == ' ') v.erase(0, 1);
      return v;
    }
  }
  return std::nullopt;
}

void AddAddress(const std::string& v,
                google::protobuf::RepeatedPtrField<ms::EnvelopeAddress>* out) {
  ms::EnvelopeAddress* a = out->Add();
  std::string addr = v;
  size_t lt = v.find('<'), gt = v.find('>');
  if (lt != std::string::npos && gt != std::string::npos && gt > lt) {
    std::string name = v.substr(0, lt);
    while (!name.empty() && name.back() == ' ') name.pop_back();
    if (name.size() >= 2 && name.front() == '"') name = name.substr(1, name.size() - 2);
    if (!name.empty()) a->set_name(name);
    addr = v.substr(lt + 1, gt - lt - 1);
  }
  size_t at = addr.find('@');
  a->set_mailbox(addr.substr(0, at));
  if (at != std::string::npos) a->set_host(addr.substr(at + 1));
}

ms::Envelope EnvelopeOf(const std::string& header) {
  ms::Envelope e;
  if (auto v = Field(header, "date")) e.set_date(*v);
  if (auto v = Field(header, "subject")) e.set_subject(*v);
  if (auto v = Field(header, "from")) AddAddress(*v, e.mutable_from());
  if (auto v = Field(header, "to")) AddAddress(*v, e.mutable_to());
  if (auto v = Field(header, "cc")) AddAddress(*v, e.mutable_cc());
  if (auto v = Field(header, "message-id")) e.set_message_id(*v);
  return e;
}

ms::BodyPart StructureOf(const std::string& header, const std::string& body) {
  ms::BodyPart p;
  p.set_type("text");
  p.set_subtype("plain");
  ms::Parameter* cs = p.add_params();
  cs->set_name("charset");
  cs->set_value("utf-8");
  // Like mailstored: the header's Content-Transfer-Encoding, lower-cased.
  std::string cte = "7bit";
  if (auto v = Field(header, "content-transfer-encoding")) {
    cte = *v;
    for (char& c : cte) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  p.set_encoding(cte);
  p.set_size(body.size());
  uint64_t lines = 0;
  for (char c : body) lines += c == '\n';
  p.set_lines(lines);
  return p;
}

std::string Section(const std::string& raw, const ms::BodySection& s, bool* exists) {
  *exists = s.part().empty() || s.part() == "1";
  if (!*exists) return "";
  auto [header, body] = Split(raw);
  switch (s.text()) {
    case ms::SECTION_TEXT_HEADER:
      return header;
    case ms::SECTION_TEXT_TEXT:
      return body;
    case ms::SECTION_TEXT_MIME:
      return "";
    case ms::SECTION_TEXT_HEADER_FIELDS:
    case ms::SECTION_TEXT_HEADER_FIELDS_NOT: {
      std::string out;
      bool want_not = s.text() == ms::SECTION_TEXT_HEADER_FIELDS_NOT;
      for (const auto& [name, line] : Fields(header)) {
        bool listed = false;
        for (const std::string& f : s.header_fields()) listed |= Lower(f) == name;
        if (listed != want_not) out += line;
      }
      return out + "\r\n";
    }
    default:
      break;
  }
  if (s.part() != "1") return raw;
  // BINARY: base64 undone (the only transfer encoding the fake knows).
  auto cte = Field(header, "content-transfer-encoding");
  if (s.decode() && cte && Lower(std::string(absl::StripAsciiWhitespace(*cte))) == "base64") {
    std::string compact;
    for (char c : body) {
      if (c != '\r' && c != '\n') compact.push_back(c);
    }
    if (auto d = imap::DecodeBase64(compact); d.ok()) return *d;
  }
  return body;
}

bool Contains(std::string_view hay, std::string_view needle) {
  return Lower(hay).find(Lower(needle)) != std::string::npos;
}

}  // namespace

// ---- Authenticator -----------------------------------------------------------

void FakeAuthenticator::AddUser(std::string user, std::string password, Principal p) {
  users_[std::move(user)] = {std::move(password), std::move(p)};
}

void FakeAuthenticator::AddToken(std::string token, std::string user) {
  tokens_[std::move(token)] = std::move(user);
}

void FakeAuthenticator::CheckSasl(const imap::SaslCredentials& c, common::v1::Protocol,
                                  const std::string&, Callback<Principal> done) {
  if (!fail_next_.ok()) return done(std::exchange(fail_next_, absl::OkStatus()));
  std::string user = c.authcid;
  if (!c.bearer_token.empty()) {
    auto t = tokens_.find(c.bearer_token);
    if (t == tokens_.end()) return done(absl::UnauthenticatedError("bad token"));
    user = t->second;
  }
  auto it = users_.find(user);
  if (it == users_.end() || (c.bearer_token.empty() && it->second.first != c.password)) {
    return done(absl::UnauthenticatedError("bad credentials"));
  }
  done(it->second.second);
}

// ---- Mailstore ---------------------------------------------------------------

class FakeMailstore::Handle : public WatchHandle {
 public:
  explicit Handle(std::shared_ptr<Watcher> w) : w_(std::move(w)) {}
  ~Handle() override { Cancel(); }
  void Cancel() override { w_->cancelled = true; }

 private:
  std::shared_ptr<Watcher> w_;
};

bool FakeMailstore::TakeFailure(absl::Status* st) {
  if (fail_next_.ok()) return false;
  if (fail_skip_ > 0) {
    --fail_skip_;
    return false;
  }
  *st = std::exchange(fail_next_, absl::OkStatus());
  return true;
}

bool FakeMailstore::TakeLostReply(absl::Status* st) {
  if (lose_next_.ok()) return false;
  if (lose_skip_ > 0) {
    --lose_skip_;
    return false;
  }
  *st = std::exchange(lose_next_, absl::OkStatus());
  return true;
}

size_t FakeMailstore::watchers() const {
  size_t n = 0;
  for (const auto& w : watchers_) n += !w->cancelled;
  return n;
}

void FakeMailstore::AddMailbox(const std::string& id) {
  Mailbox& m = mailboxes_[id];
  AddFolder(&m, "INBOX", ms::SPECIAL_USE_INBOX);
  AddFolder(&m, "Sent", ms::SPECIAL_USE_SENT);
  AddFolder(&m, "Drafts", ms::SPECIAL_USE_DRAFTS);
  AddFolder(&m, "Trash", ms::SPECIAL_USE_TRASH);
  AddFolder(&m, "Junk", ms::SPECIAL_USE_JUNK);
  AddFolder(&m, "Archive", ms::SPECIAL_USE_ARCHIVE);
}

FakeMailstore::Folder* FakeMailstore::AddFolder(Mailbox* m, const std::string& name,
                                                ms::SpecialUse use) {
  auto f = std::make_unique<Folder>();
  f->id = absl::StrCat("f", m->next_folder++);
  f->name = name;
  f->special_use = use;
  f->uidvalidity = next_uidvalidity_++;
  m->folders.push_back(std::move(f));
  return m->folders.back().get();
}

FakeMailstore::Mailbox* FakeMailstore::FindMailbox(const std::string& id) {
  auto it = mailboxes_.find(id);
  return it == mailboxes_.end() ? nullptr : &it->second;
}

FakeMailstore::Folder* FakeMailstore::FindFolder(Mailbox* m, const ms::FolderRef& ref) {
  if (m == nullptr) return nullptr;
  for (auto& f : m->folders) {
    if (ref.has_folder_id() && f->id == ref.folder_id()) return f.get();
    if (ref.has_name() &&
        (f->name == ref.name() || (Lower(ref.name()) == "inbox" && f->name == "INBOX"))) {
      return f.get();
    }
    if (ref.key_case() == ms::FolderRef::kSpecialUse && f->special_use == ref.special_use()) {
      return f.get();
    }
  }
  return nullptr;
}

ms::Folder FakeMailstore::Describe(const Mailbox& m, const Folder& f) const {
  ms::Folder out;
  out.set_folder_id(f.id);
  out.set_name(f.name);
  out.set_special_use(f.special_use == ms::SPECIAL_USE_INBOX ? ms::SPECIAL_USE_UNSPECIFIED
                                                             : f.special_use);
  out.set_subscribed(f.subscribed);
  for (const auto& o : m.folders) {
    if (o->name.size() > f.name.size() && o->name.compare(0, f.name.size(), f.name) == 0 &&
        o->name[f.name.size()] == '/') {
      out.set_has_children(true);
    }
  }
  out.set_uidvalidity(f.uidvalidity);
  out.set_uidnext(f.uidnext);
  out.set_messages(static_cast<uint32_t>(f.messages.size()));
  uint32_t unseen = 0, recent = 0;
  uint64_t size = 0;
  for (const auto& [uid, msg] : f.messages) {
    unseen += !msg.flags.count("\\Seen");
    recent += !msg.recent_claimed;
    size += msg.raw.size();
  }
  out.set_unseen(unseen);
  out.set_recent(recent);
  out.set_highest_modseq(f.modseq);
  out.set_size_bytes(size);
  return out;
}

void FakeMailstore::Notify(const std::string& mailbox_id, const Folder& f, ms::WatchEventKind kind,
                           std::vector<uint32_t> uids) {
  ms::WatchEvent e;
  e.set_kind(kind);
  e.set_folder_id(f.id);
  e.set_folder_name(f.name);
  *e.mutable_uids() = CompactIdSet(uids);
  if (kind == ms::WATCH_EVENT_KIND_FLAGS_CHANGED) {
    // As mailstored: each changed message's flags and MODSEQ after the change.
    for (uint32_t uid : uids) {
      auto it = f.messages.find(uid);
      if (it == f.messages.end()) continue;
      ms::MessageFlags* m = e.add_messages();
      m->set_uid(uid);
      m->set_modseq(it->second.modseq);
      for (const std::string& flag : it->second.flags) m->add_flags(flag);
    }
  }
  e.set_modseq(f.modseq);
  e.set_messages_count(static_cast<uint32_t>(f.messages.size()));
  auto snapshot = watchers_;
  for (const auto& w : snapshot) {
    if (!w->cancelled && w->mailbox_id == mailbox_id) w->on_event(e);
  }
}

uint32_t FakeMailstore::Deliver(const std::string& mailbox_id, const std::string& folder,
                                const std::string& raw, std::vector<std::string> flags) {
  Mailbox* m = FindMailbox(mailbox_id);
  ms::FolderRef ref;
  ref.set_name(folder);
  Folder* f = FindFolder(m, ref);
  if (f == nullptr) return 0;
  uint32_t uid = f->uidnext++;
  Message& msg = f->messages[uid];
  msg.raw = raw;
  msg.flags.insert(flags.begin(), flags.end());
  msg.modseq = ++f->modseq;
  msg.internal_date = clock_++;
  Notify(mailbox_id, *f, ms::WATCH_EVENT_KIND_MESSAGES_ADDED, {uid});
  return uid;
}

void FakeMailstore::ExternalStore(const std::string& mailbox_id, const std::string& folder,
                                  uint32_t uid, std::vector<std::string> flags) {
  ms::FolderRef ref;
  ref.set_name(folder);
  Folder* f = FindFolder(FindMailbox(mailbox_id), ref);
  if (f == nullptr || !f->messages.count(uid)) return;
  Message& msg = f->messages[uid];
  msg.flags = std::set<std::string>(flags.begin(), flags.end());
  msg.modseq = ++f->modseq;
  Notify(mailbox_id, *f, ms::WATCH_EVENT_KIND_FLAGS_CHANGED, {uid});
}

void FakeMailstore::ExternalExpunge(const std::string& mailbox_id, const std::string& folder,
                                    uint32_t uid) {
  ms::FolderRef ref;
  ref.set_name(folder);
  Folder* f = FindFolder(FindMailbox(mailbox_id), ref);
  if (f == nullptr || !f->messages.count(uid)) return;
  f->messages.erase(uid);
  f->tombstones[uid] = ++f->modseq;
  Notify(mailbox_id, *f, ms::WATCH_EVENT_KIND_MESSAGES_EXPUNGED, {uid});
}

std::vector<uint32_t> FakeMailstore::Select(const Folder& f, const ms::MessageSelector& s) const {
  std::vector<uint32_t> all;
  for (const auto& [uid, m] : f.messages) all.push_back(uid);
  std::vector<uint32_t> out;
  const ms::IdSet& set = s.has_uids() ? s.uids() : s.sequence_numbers();
  for (const ms::IdRange& r : set.ranges()) {
    uint32_t last_val =
        s.has_uids() ? (all.empty() ? 0 : all.back()) : static_cast<uint32_t>(all.size());
    uint32_t a = r.first(), b = r.to_last() ? last_val : r.last();
    if (a > b) std::swap(a, b);
    for (size_t i = 0; i < all.size(); ++i) {
      uint32_t key = s.has_uids() ? all[i] : static_cast<uint32_t>(i + 1);
      if (key >= a && key <= b) out.push_back(all[i]);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

#define FAKE_PRELUDE(resp_type)                                                  \
  absl::Status failure;                                                          \
  if (TakeFailure(&failure)) return done(failure);                               \
  if (absl::Status lost; TakeLostReply(&lost)) {                                 \
    done = [d = std::move(done), lost](absl::StatusOr<resp_type>) { d(lost); };  \
  }                                                                              \
  Mailbox* mbx = FindMailbox(r.mailbox_id());                                    \
  if (mbx == nullptr) return done(absl::NotFoundError("mailbox"))

void FakeMailstore::ListFolders(const CallTarget&, const ms::ListFoldersRequest& r,
                                Callback<ms::ListFoldersResponse> done) {
  FAKE_PRELUDE(ms::ListFoldersResponse);
  ms::ListFoldersResponse out;
  std::vector<const Folder*> sorted;
  for (const auto& f : mbx->folders) sorted.push_back(f.get());
  std::sort(sorted.begin(), sorted.end(), [](const Folder* a, const Folder* b) {
    if (a->name == "INBOX") return b->name != "INBOX";
    if (b->name == "INBOX") return false;
    return a->name < b->name;
  });
  for (const Folder* f : sorted) {
    if (r.subscribed_only() && !f->subscribed) continue;
    *out.add_folders() = Describe(*mbx, *f);
  }
  for (const std::string& d : mbx->subscriptions_dangling) out.add_dangling_subscriptions(d);
  done(out);
}

void FakeMailstore::FolderStatus(const CallTarget&, const ms::FolderStatusRequest& r,
                                 Callback<ms::FolderStatusResponse> done) {
  FAKE_PRELUDE(ms::FolderStatusResponse);
  Folder* f = FindFolder(mbx, r.folder());
  if (f == nullptr) return done(absl::NotFoundError("folder"));
  ms::FolderStatusResponse out;
  *out.mutable_folder() = Describe(*mbx, *f);
  std::vector<uint32_t> uids, recent;
  for (auto& [uid, m] : f->messages) {
    uids.push_back(uid);
    if (out.first_unseen_uid() == 0 && !m.flags.count("\\Seen")) out.set_first_unseen_uid(uid);
    if (r.claim_recent() && !m.recent_claimed) {
      m.recent_claimed = true;
      recent.push_back(uid);
    }
  }
  if (r.include_uids()) *out.mutable_uids() = CompactIdSet(uids);
  *out.mutable_recent_uids() = CompactIdSet(recent);
  done(out);
}

// FolderStatus then ChangesSince, as one call: a failure set with
// FailNext/FailNth hits the call as a whole, once.
void FakeMailstore::SelectFolder(const CallTarget& t, const ms::SelectFolderRequest& r,
                                 Callback<ms::SelectFolderResponse> done) {
  absl::Status failure;
  if (TakeFailure(&failure)) return done(failure);
  if (absl::Status lost; TakeLostReply(&lost)) {
    done = [d = std::move(done), lost](absl::StatusOr<ms::SelectFolderResponse>) { d(lost); };
  }
  absl::Status pending = std::exchange(fail_next_, absl::OkStatus());
  absl::Status pending_loss = std::exchange(lose_next_, absl::OkStatus());
  ms::FolderStatusRequest fs;
  fs.set_mailbox_id(r.mailbox_id());
  *fs.mutable_folder() = r.folder();
  fs.set_claim_recent(r.claim_recent());
  fs.set_include_uids(r.include_uids());
  absl::StatusOr<ms::SelectFolderResponse> out = ms::SelectFolderResponse();
  FolderStatus(t, fs, [&out](absl::StatusOr<ms::FolderStatusResponse> st) {
    if (!st.ok()) {
      out = st.status();
    } else {
      *out->mutable_status() = std::move(*st);
    }
  });
  if (out.ok() && r.has_changes() &&
      (r.changes().uidvalidity() == 0 ||
       r.changes().uidvalidity() == out->status().folder().uidvalidity())) {
    ms::ChangesSinceRequest cs = r.changes();
    cs.set_mailbox_id(r.mailbox_id());
    cs.mutable_folder()->set_folder_id(out->status().folder().folder_id());
    ChangesSince(t, cs, [&out](absl::StatusOr<ms::ChangesSinceResponse> c) {
      if (!c.ok()) {
        out = c.status();
      } else {
        *out->mutable_changes() = std::move(*c);
      }
    });
  }
  fail_next_ = std::move(pending);
  lose_next_ = std::move(pending_loss);
  done(std::move(out));
}

void FakeMailstore::CreateFolder(const CallTarget&, const ms::CreateFolderRequest& r,
                                 Callback<ms::Folder> done) {
  FAKE_PRELUDE(ms::Folder);
  ms::FolderRef ref;
  ref.set_name(r.name());
  if (FindFolder(mbx, ref) != nullptr) return done(absl::AlreadyExistsError("exists"));
  if (r.name().empty() || r.name().front() == '/') {
    return done(absl::InvalidArgumentError("BAD_NAME"));
  }
  // Missing parents first.
  for (size_t p = r.name().find('/'); p != std::string::npos; p = r.name().find('/', p + 1)) {
    ms::FolderRef parent;
    parent.set_name(r.name().substr(0, p));
    if (FindFolder(mbx, parent) == nullptr)
      AddFolder(mbx, parent.name(), ms::SPECIAL_USE_UNSPECIFIED);
  }
  Folder* f = AddFolder(mbx, r.name(), r.special_use());
  done(Describe(*mbx, *f));
}

void FakeMailstore::RenameFolder(const CallTarget&, const ms::RenameFolderRequest& r,
                                 Callback<ms::Folder> done) {
  FAKE_PRELUDE(ms::Folder);
  Folder* f = FindFolder(mbx, r.folder());
  if (f == nullptr) return done(absl::NotFoundError("folder"));
  ms::FolderRef to;
  to.set_name(r.new_name());
  if (FindFolder(mbx, to) != nullptr) return done(absl::AlreadyExistsError("exists"));
  std::string old = f->name;
  for (auto& o : mbx->folders) {
    if (o->name == old)
      o->name = r.new_name();
    else if (o->name.rfind(old + "/", 0) == 0)
      o->name = r.new_name() + o->name.substr(old.size());
  }
  done(Describe(*mbx, *f));
}

void FakeMailstore::DeleteFolder(const CallTarget&, const ms::DeleteFolderRequest& r,
                                 Callback<ms::DeleteFolderResponse> done) {
  FAKE_PRELUDE(ms::DeleteFolderResponse);
  Folder* f = FindFolder(mbx, r.folder());
  if (f == nullptr) return done(absl::NotFoundError("folder"));
  if (f->name == "INBOX") return done(absl::FailedPreconditionError("INBOX"));
  ms::DeleteFolderResponse out;
  out.set_messages_deleted(static_cast<int64_t>(f->messages.size()));
  mbx->folders.erase(std::remove_if(mbx->folders.begin(), mbx->folders.end(),
                                    [f](const auto& p) { return p.get() == f; }),
                     mbx->folders.end());
  done(out);
}

void FakeMailstore::SubscribeFolder(const CallTarget&, const ms::SubscribeFolderRequest& r,
                                    Callback<ms::SubscribeFolderResponse> done) {
  FAKE_PRELUDE(ms::SubscribeFolderResponse);
  ms::FolderRef ref;
  ref.set_name(r.name());
  if (Folder* f = FindFolder(mbx, ref)) {
    f->subscribed = r.subscribe();
  } else if (r.subscribe()) {
    mbx->subscriptions_dangling.insert(r.name());
  } else {
    mbx->subscriptions_dangling.erase(r.name());
  }
  done(ms::SubscribeFolderResponse());
}

void FakeMailstore::Append(const CallTarget&, const ms::AppendRequest& r,
                           Callback<ms::AppendResponse> done) {
  FAKE_PRELUDE(ms::AppendResponse);
  std::string key = r.idempotency_key().empty() ? "" : r.mailbox_id() + "\n" + r.idempotency_key();
  if (auto it = appended_.find(key); !key.empty() && it != appended_.end()) {
    return done(it->second);  // a retry: the first result
  }
  Folder* f = FindFolder(mbx, r.folder());
  if (f == nullptr) return done(absl::NotFoundError("folder"));
  std::vector<std::string> flags(r.flags().begin(), r.flags().end());
  uint32_t uid = Deliver(r.mailbox_id(), f->name, r.message(), flags);
  if (r.has_internal_date()) f->messages[uid].internal_date = r.internal_date().seconds();
  ms::AppendResponse out;
  out.set_folder_id(f->id);
  out.set_uid(uid);
  out.set_uidvalidity(f->uidvalidity);
  out.set_modseq(f->modseq);
  out.set_size(r.message().size());
  if (!key.empty()) appended_[key] = out;
  done(out);
}

void FakeMailstore::Fetch(const CallTarget&, const ms::FetchRequest& r,
                          Callback<std::vector<ms::FetchResponse>> done) {
  FAKE_PRELUDE(std::vector<ms::FetchResponse>);
  Folder* f = FindFolder(mbx, r.folder());
  if (f == nullptr) return done(absl::NotFoundError("folder"));
  std::vector<ms::FetchResponse> out;
  std::vector<uint32_t> changed;
  uint32_t seq = 0;
  for (uint32_t uid : Select(*f, r.messages())) {
    Message& m = f->messages[uid];
    ++seq;
    if (r.changed_since() != 0 && m.modseq <= r.changed_since()) continue;
    ms::FetchResponse resp;
    resp.set_uid(uid);
    resp.set_sequence_number(seq);
    if (r.set_seen() && !m.flags.count("\\Seen")) {
      m.flags.insert("\\Seen");
      m.modseq = ++f->modseq;
      resp.set_flags_changed(true);
      changed.push_back(uid);
    }
    for (const std::string& fl : m.flags) resp.add_flags(fl);
    resp.set_modseq(m.modseq);
    resp.mutable_internal_date()->set_seconds(m.internal_date);
    resp.set_rfc822_size(m.raw.size());
    if (r.items().raw()) resp.set_raw(m.raw);
    auto [header, body] = Split(m.raw);
    if (r.items().envelope()) *resp.mutable_envelope() = EnvelopeOf(header);
    if (r.items().bodystructure()) *resp.mutable_bodystructure() = StructureOf(header, body);
    for (const ms::BodySection& s : r.items().sections()) {
      ms::SectionData* d = resp.add_sections();
      *d->mutable_section() = s;
      bool exists = false;
      std::string data = Section(m.raw, s, &exists);
      if (!exists) continue;
      if (s.has_partial()) {
        uint64_t off = std::min<uint64_t>(s.partial_offset(), data.size());
        data = data.substr(off, s.partial_length());
        d->set_origin(s.partial_offset());
      }
      d->set_data(data);
    }
    out.push_back(std::move(resp));
  }
  done(out);
  if (!changed.empty()) Notify(r.mailbox_id(), *f, ms::WATCH_EVENT_KIND_FLAGS_CHANGED, changed);
}

void FakeMailstore::StoreFlags(const CallTarget&, const ms::StoreFlagsRequest& r,
                               Callback<ms::StoreFlagsResponse> done) {
  FAKE_PRELUDE(ms::StoreFlagsResponse);
  Folder* f = FindFolder(mbx, r.folder());
  if (f == nullptr) return done(absl::NotFoundError("folder"));
  ms::StoreFlagsResponse out;
  std::vector<uint32_t> modified, changed;
  for (uint32_t uid : Select(*f, r.messages())) {
    Message& m = f->messages[uid];
    if (r.has_unchanged_since() && m.modseq > r.unchanged_since()) {
      modified.push_back(uid);
      continue;
    }
    std::set<std::string> before = m.flags;
    if (r.mode() == ms::STORE_MODE_REPLACE) m.flags.clear();
    for (const std::string& fl : r.flags()) {
      if (r.mode() == ms::STORE_MODE_REMOVE) {
        m.flags.erase(fl);
      } else {
        m.flags.insert(fl);
      }
    }
    if (m.flags != before) {
      m.modseq = ++f->modseq;
      changed.push_back(uid);
    }
    ms::MessageFlags* u = out.add_updated();
    u->set_uid(uid);
    for (const std::string& fl : m.flags) u->add_flags(fl);
    u->set_modseq(m.modseq);
  }
  *out.mutable_modified() = CompactIdSet(modified);
  out.set_highest_modseq(f->modseq);
  done(out);
  if (!changed.empty()) Notify(r.mailbox_id(), *f, ms::WATCH_EVENT_KIND_FLAGS_CHANGED, changed);
}

void FakeMailstore::Copy(const CallTarget&, const ms::CopyRequest& r,
                         Callback<ms::CopyResponse> done) {
  FAKE_PRELUDE(ms::CopyResponse);
  Folder* src = FindFolder(mbx, r.source());
  Folder* dst = FindFolder(mbx, r.destination());
  if (src == nullptr || dst == nullptr) return done(absl::NotFoundError("folder"));
  ms::CopyResponse out;
  out.set_destination_uidvalidity(dst->uidvalidity);
  out.set_destination_folder_id(dst->id);
  std::vector<uint32_t> added;
  for (uint32_t uid : Select(*src, r.messages())) {
    uint32_t nu = dst->uidnext++;
    Message copy = src->messages[uid];
    copy.modseq = ++dst->modseq;
    copy.recent_claimed = false;
    dst->messages[nu] = copy;
    out.add_source_uids(uid);
    out.add_destination_uids(nu);
    added.push_back(nu);
  }
  out.set_destination_modseq(dst->modseq);
  done(out);
  if (!added.empty()) Notify(r.mailbox_id(), *dst, ms::WATCH_EVENT_KIND_MESSAGES_ADDED, added);
}

void FakeMailstore::Move(const CallTarget& t, const ms::MoveRequest& r,
                         Callback<ms::MoveResponse> done) {
  FAKE_PRELUDE(ms::MoveResponse);
  Folder* src = FindFolder(mbx, r.source());
  Folder* dst = FindFolder(mbx, r.destination());
  if (src == nullptr || dst == nullptr) return done(absl::NotFoundError("folder"));
  ms::MoveResponse out;
  out.set_destination_uidvalidity(dst->uidvalidity);
  out.set_destination_folder_id(dst->id);
  std::vector<uint32_t> gone;
  for (uint32_t uid : Select(*src, r.messages())) {
    uint32_t nu = dst->uidnext++;
    Message moved = src->messages[uid];
    moved.modseq = ++dst->modseq;
    dst->messages[nu] = moved;
    src->messages.erase(uid);
    src->tombstones[uid] = ++src->modseq;
    out.add_source_uids(uid);
    out.add_destination_uids(nu);
    gone.push_back(uid);
  }
  out.set_source_modseq(src->modseq);
  done(out);
  if (!gone.empty()) Notify(r.mailbox_id(), *src, ms::WATCH_EVENT_KIND_MESSAGES_EXPUNGED, gone);
}

void FakeMailstore::Expunge(const CallTarget&, const ms::ExpungeRequest& r,
                            Callback<ms::ExpungeResponse> done) {
  FAKE_PRELUDE(ms::ExpungeResponse);
  Folder* f = FindFolder(mbx, r.folder());
  if (f == nullptr) return done(absl::NotFoundError("folder"));
  std::vector<uint32_t> candidates;
  if (r.has_uids()) {
    ms::MessageSelector s;
    *s.mutable_uids() = r.uids();
    candidates = Select(*f, s);
  } else {
    for (const auto& [uid, m] : f->messages) candidates.push_back(uid);
  }
  std::vector<uint32_t> gone;
  for (uint32_t uid : candidates) {
    if (!f->messages[uid].flags.count("\\Deleted")) continue;
    f->messages.erase(uid);
    f->tombstones[uid] = ++f->modseq;
    gone.push_back(uid);
  }
  ms::ExpungeResponse out;
  *out.mutable_expunged() = CompactIdSet(gone);
  out.set_highest_modseq(f->modseq);
  done(out);
  if (!gone.empty()) Notify(r.mailbox_id(), *f, ms::WATCH_EVENT_KIND_MESSAGES_EXPUNGED, gone);
}

void FakeMailstore::ChangesSince(const CallTarget&, const ms::ChangesSinceRequest& r,
                                 Callback<ms::ChangesSinceResponse> done) {
  ++changes_since_calls_;
  FAKE_PRELUDE(ms::ChangesSinceResponse);
  Folder* f = FindFolder(mbx, r.folder());
  if (f == nullptr) return done(absl::NotFoundError("folder"));
  if (r.uidvalidity() != 0 && r.uidvalidity() != f->uidvalidity) {
    return done(absl::FailedPreconditionError("UIDVALIDITY_CHANGED"));
  }
  ms::ChangesSinceResponse out;
  // QRESYNC known-uids: only these ("*" is the folder's largest UID).
  auto wanted = [&r, f](uint32_t uid) {
    if (!r.has_uids() || r.uids().ranges_size() == 0) return true;
    for (const ms::IdRange& x : r.uids().ranges()) {
      uint32_t a = x.first(), b = x.to_last() ? f->uidnext - 1 : x.last();
      if (a > b) std::swap(a, b);
      if (uid >= a && uid <= b) return true;
    }
    return false;
  };
  for (const auto& [uid, m] : f->messages) {
    if (m.modseq <= r.modseq() || !wanted(uid)) continue;
    ms::MessageFlags* c = out.add_changed();
    c->set_uid(uid);
    for (const std::string& fl : m.flags) c->add_flags(fl);
    c->set_modseq(m.modseq);
  }
  std::vector<uint32_t> vanished;
  for (const auto& [uid, ms_] : f->tombstones) {
    if (ms_ > r.modseq() && wanted(uid)) vanished.push_back(uid);
  }
  if (r.include_vanished()) *out.mutable_vanished() = CompactIdSet(vanished);
  out.set_highest_modseq(f->modseq);
  out.set_uidvalidity(f->uidvalidity);
  done(out);
}

bool FakeMailstore::Matches(const Folder& f, uint32_t uid, const Message& m,
                            const ms::SearchQuery& q) const {
  auto [header, body] = Split(m.raw);
  switch (q.node_case()) {
    case ms::SearchQuery::kAll:
      return true;
    case ms::SearchQuery::kAllOf:
      for (const auto& s : q.all_of().queries()) {
        if (!Matches(f, uid, m, s)) return false;
      }
      return true;
    case ms::SearchQuery::kAnyOf:
      for (const auto& s : q.any_of().queries()) {
        if (Matches(f, uid, m, s)) return true;
      }
      return false;
    case ms::SearchQuery::kNegation:
      return !Matches(f, uid, m, q.negation());
    case ms::SearchQuery::kFlag: {
      bool has = false;
      for (const std::string& fl : m.flags) has |= Lower(fl) == Lower(q.flag().flag());
      return has != q.flag().absent();
    }
    case ms::SearchQuery::kText: {
      const ms::TextMatch& t = q.text();
      std::string_view names[] = {"", "from", "to", "cc", "bcc", "subject"};
      switch (t.field()) {
        case ms::TEXT_FIELD_BODY:
          return Contains(body, t.value());
        case ms::TEXT_FIELD_TEXT:
          return Contains(m.raw, t.value());
        case ms::TEXT_FIELD_HEADER: {
          auto v = Field(header, Lower(t.header_name()));
          return v && Contains(*v, t.value());
        }
        default: {
          auto v = Field(header, names[t.field()]);
          return v && Contains(*v, t.value());
        }
      }
    }
    case ms::SearchQuery::kSize:
      return q.size().op() == ms::SIZE_OP_LARGER ? m.raw.size() > q.size().bytes()
                                                 : m.raw.size() < q.size().bytes();
    case ms::SearchQuery::kUids:
      for (const ms::IdRange& r : q.uids().ranges()) {
        if (uid >= r.first() && uid <= r.last()) return true;
      }
      return false;
    case ms::SearchQuery::kModseqAtLeast:
      return m.modseq >= q.modseq_at_least();
    case ms::SearchQuery::kDate:
      return true;  // dates: not modelled by the fake
    default:
      return false;
  }
}

void FakeMailstore::Search(const CallTarget&, const ms::SearchRequest& r,
                           Callback<ms::SearchResponse> done) {
  FAKE_PRELUDE(ms::SearchResponse);
  Folder* f = FindFolder(mbx, r.folder());
  if (f == nullptr) return done(absl::NotFoundError("folder"));
  std::vector<uint32_t> hits;
  uint64_t highest = 0;
  for (const auto& [uid, m] : f->messages) {
    if (Matches(*f, uid, m, r.query())) {
      hits.push_back(uid);
      highest = std::max(highest, m.modseq);
    }
  }
  ms::SearchResponse out;
  *out.mutable_uids() = CompactIdSet(hits);
  out.set_count(static_cast<uint32_t>(hits.size()));
  out.set_highest_modseq(highest);
  done(out);
}

void FakeMailstore::GetQuota(const CallTarget&, const ms::GetQuotaRequest& r,
                             Callback<ms::Quota> done) {
  FAKE_PRELUDE(ms::Quota);
  ms::Quota q;
  q.set_mailbox_id(r.mailbox_id());
  for (const auto& f : mbx->folders) {
    for (const auto& [uid, m] : f->messages) {
      q.set_usage_bytes(q.usage_bytes() + m.raw.size());
      q.set_usage_messages(q.usage_messages() + 1);
    }
  }
  q.mutable_limit()->mutable_bytes()->set_value(1 << 30);
  q.mutable_limit()->mutable_messages()->set_unlimited(true);
  done(q);
}

std::unique_ptr<WatchHandle> FakeMailstore::Watch(
    const CallTarget&, const ms::WatchRequest& r,
    std::function<void(const ms::WatchEvent&)> on_event, std::function<void(absl::Status)> on_end) {
  auto w = std::make_shared<Watcher>();
  w->mailbox_id = r.mailbox_id();
  w->on_event = std::move(on_event);
  watchers_.push_back(w);
  ms::WatchEvent ready;
  ready.set_kind(ms::WATCH_EVENT_KIND_READY);
  w->on_event(ready);
  return std::make_unique<Handle>(w);
}

}  // namespace mailgrid::access
