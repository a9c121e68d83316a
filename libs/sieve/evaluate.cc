// Running a compiled script against one message (RFC 5228 §2.10 for the
// implicit keep and action conflicts, RFC 5232 for the flag variable).
#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "libs/mail/address.h"
#include "libs/mail/rfc2047.h"
#include "libs/sieve/match.h"
#include "libs/sieve/program.h"
#include "libs/sieve/sieve.h"

namespace mailgrid::sieve {

struct EvaluateAccess {
  static const internal::Program& ProgramOf(const Script& script) { return *script.program_; }
};

namespace {

using internal::Command;
using internal::Test;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) { return Lower(a) == Lower(b); }

// FNV-1a 64: stable across builds and versions (std::hash is not), which a
// memory kept in Redis across restarts needs.
std::string Fnv1aHex(std::string_view data) {
  uint64_t h = 1469598103934665603ULL;
  for (char c : data) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kHex[h & 0xF];
    h >>= 4;
  }
  return out;
}

struct SplitAddress {
  std::string local;
  std::string domain;
};

// The address part to compare (RFC 5228 §2.7.4, RFC 5233 §4); nullopt when
// the part does not exist (:detail of an address without '+').
std::optional<std::string> AddressPartOf(const SplitAddress& a, internal::AddressPart part) {
  switch (part) {
    case internal::AddressPart::kAll:
      return a.domain.empty() ? a.local : absl::StrCat(a.local, "@", a.domain);
    case internal::AddressPart::kLocalPart:
      return a.local;
    case internal::AddressPart::kDomain:
      return a.domain;
    case internal::AddressPart::kUser:
      return a.local.substr(0, a.local.find('+'));
    case internal::AddressPart::kDetail: {
      size_t plus = a.local.find('+');
      if (plus == std::string::npos) return std::nullopt;
      return a.local.substr(plus + 1);
    }
  }
  return std::nullopt;
}

// An envelope address as relayd hands it over ("local@domain", possibly
// with <> or a quoted local part).
SplitAddress SplitEnvelope(std::string_view address) {
  if (address.size() >= 2 && address.front() == '<' && address.back() == '>') {
    address = address.substr(1, address.size() - 2);
  }
  SplitAddress out;
  size_t at = address.rfind('@');
  std::string_view local = at == std::string_view::npos ? address : address.substr(0, at);
  if (at != std::string_view::npos) out.domain = std::string(address.substr(at + 1));
  if (local.size() >= 2 && local.front() == '"' && local.back() == '"') {
    std::string unquoted;
    for (size_t i = 1; i + 1 < local.size(); ++i) {
      if (local[i] == '\\' && i + 2 < local.size()) ++i;
      unquoted.push_back(local[i]);
    }
    out.local = std::move(unquoted);
  } else {
    out.local = std::string(local);
  }
  return out;
}

struct RuntimeError {
  const Command* at;
  std::string message;
};

class Evaluator {
 public:
  Evaluator(const MessageContext& message, const EvaluateOptions& options)
      : message_(message), options_(options) {}

  Actions Run(const std::vector<Command>& commands) {
    Block(commands);
    Actions result;
    if (error_.has_value()) {
      result.error = absl::StrCat(error_->at->line, ":", error_->at->column, ": ", error_->message);
      Action keep;
      keep.kind = ActionKind::kKeep;
      result.actions.push_back(std::move(keep));
      result.implicit_keep = true;
      return result;
    }
    result.actions = std::move(actions_);
    if (implicit_keep_) {
      result.implicit_keep = true;
      Action keep;
      keep.kind = ActionKind::kKeep;
      keep.flags = flags_;
      result.actions.push_back(std::move(keep));
    }
    return result;
  }

 private:
  // Returns false when evaluation must end (stop or an error).
  bool Block(const std::vector<Command>& commands) {
    for (const Command& c : commands) {
      if (!Execute(c)) return false;
    }
    return true;
  }

  bool Execute(const Command& c) {
    switch (c.kind) {
      case Command::Kind::kIf:
        for (const internal::Branch& branch : c.branches) {
          if (!branch.has_test || Check(branch.test)) return Block(branch.block);
        }
        return true;
      case Command::Kind::kStop:
        return false;
      case Command::Kind::kKeep:
        return Keep(c, c.has_flags ? c.flags : flags_);
      case Command::Kind::kDiscard:
        return Discard(c);
      case Command::Kind::kFileInto:
        return FileInto(c);
      case Command::Kind::kRedirect:
        return Redirect(c);
      case Command::Kind::kReject:
        return Reject(c);
      case Command::Kind::kVacation:
        return AddVacation(c);
      case Command::Kind::kSetFlag:
        flags_ = c.flags;
        return true;
      case Command::Kind::kAddFlag:
        flags_.insert(flags_.end(), c.flags.begin(), c.flags.end());
        flags_ = internal::SplitFlags(flags_);
        return true;
      case Command::Kind::kRemoveFlag:
        flags_.erase(std::remove_if(flags_.begin(), flags_.end(),
                                    [&](const std::string& f) {
                                      return std::any_of(c.flags.begin(), c.flags.end(),
                                                         [&](const std::string& r) {
                                                           return EqualsIgnoreCase(f, r);
                                                         });
                                    }),
                     flags_.end());
        return true;
    }
    return true;
  }

  bool Fail(const Command& c, std::string message) {
    error_ = RuntimeError{&c, std::move(message)};
    return false;
  }

  Action* Find(ActionKind kind) {
    for (Action& a : actions_) {
      if (a.kind == kind) return &a;
    }
    return nullptr;
  }

  bool Room(const Command& c) {
    if (actions_.size() >= options_.max_actions) {
      return Fail(c, absl::StrCat("more than ", options_.max_actions, " actions"));
    }
    return true;
  }

  // RFC 5429 §2.1: reject and ereject exclude every delivering action and
  // vacation, in either order.
  bool ConflictsWithReject(const Command& c, std::string_view what) {
    if (Find(ActionKind::kReject) != nullptr) {
      return !Fail(c, absl::StrCat(std::string(what), " cannot be combined with reject"));
    }
    return false;
  }

  static void MergeFlags(Action& into, const std::vector<std::string>& flags) {
    into.flags.insert(into.flags.end(), flags.begin(), flags.end());
    into.flags = internal::SplitFlags(into.flags);
  }

  bool Keep(const Command& c, const std::vector<std::string>& flags, bool cancels = true) {
    if (ConflictsWithReject(c, "keep")) return false;
    if (cancels) implicit_keep_ = false;
    // RFC 5228 §4.3: keeping twice is keeping once.
    if (Action* existing = Find(ActionKind::kKeep)) {
      MergeFlags(*existing, flags);
      return true;
    }
    if (!Room(c)) return false;
    Action a;
    a.kind = ActionKind::kKeep;
    a.flags = flags;
    actions_.push_back(std::move(a));
    return true;
  }

  bool Discard(const Command& c) {
    implicit_keep_ = false;
    if (Find(ActionKind::kDiscard) != nullptr) return true;
    if (!Room(c)) return false;
    Action a;
    a.kind = ActionKind::kDiscard;
    actions_.push_back(std::move(a));
    return true;
  }

  bool FileInto(const Command& c) {
    const std::vector<std::string>& flags = c.has_flags ? c.flags : flags_;
    if (EqualsIgnoreCase(c.text, "INBOX")) return Keep(c, flags, !c.copy);
    if (ConflictsWithReject(c, "fileinto")) return false;
    if (!c.copy) implicit_keep_ = false;
    // RFC 5228 §4.1: the same folder twice is filed once.
    for (Action& a : actions_) {
      if (a.kind == ActionKind::kFileInto && a.folder == c.text) {
        MergeFlags(a, flags);
        return true;
      }
    }
    if (!Room(c)) return false;
    Action a;
    a.kind = ActionKind::kFileInto;
    a.folder = c.text;
    a.flags = flags;
    a.copy = c.copy;
    actions_.push_back(std::move(a));
    return true;
  }

  bool Redirect(const Command& c) {
    if (ConflictsWithReject(c, "redirect")) return false;
    if (!c.copy) implicit_keep_ = false;
    size_t redirects = 0;
    for (Action& a : actions_) {
      if (a.kind != ActionKind::kRedirect) continue;
      if (EqualsIgnoreCase(a.address, c.text)) {
        a.copy = a.copy && c.copy;
        return true;
      }
      ++redirects;
    }
    if (redirects >= options_.max_redirects) {
      return Fail(c, absl::StrCat("more than ", options_.max_redirects, " redirects"));
    }
    if (!Room(c)) return false;
    Action a;
    a.kind = ActionKind::kRedirect;
    a.address = c.text;
    a.copy = c.copy;
    actions_.push_back(std::move(a));
    return true;
  }

  bool Reject(const Command& c) {
    for (const Action& a : actions_) {
      if (a.kind == ActionKind::kKeep || a.kind == ActionKind::kFileInto ||
          a.kind == ActionKind::kRedirect || a.kind == ActionKind::kVacation) {
        return Fail(c, "reject cannot be combined with keep, fileinto, redirect or vacation");
      }
    }
    implicit_keep_ = false;
    if (Find(ActionKind::kReject) != nullptr) return true;  // the first reason wins
    if (!Room(c)) return false;
    Action a;
    a.kind = ActionKind::kReject;
    a.reason = c.text;
    a.extended = c.extended;
    actions_.push_back(std::move(a));
    return true;
  }

  bool AddVacation(const Command& c) {
    if (ConflictsWithReject(c, "vacation")) return false;
    if (Find(ActionKind::kVacation) != nullptr) {
      return Fail(c, "vacation is used more than once");  // RFC 5230 §4.7
    }
    if (!Room(c)) return false;
    Action a;
    a.kind = ActionKind::kVacation;
    Vacation& v = a.vacation;
    v.days = c.days;
    v.subject = c.subject;
    v.from = c.from;
    v.reason = c.text;
    v.mime = c.mime;
    v.addresses = c.addresses;
    // RFC 5230 §4.2: without :handle, replies with the same text share one
    // memory.
    v.handle = c.has_handle
                   ? c.handle
                   : absl::StrCat("auto-", Fnv1aHex(absl::StrCat(c.text, std::string(1, '\0'),
                                                                 c.subject, std::string(1, '\0'),
                                                                 c.from, c.mime ? "\1" : "\0")));
    actions_.push_back(std::move(a));
    return true;
  }

  // ---- tests ----

  bool Check(const Test& t) {
    switch (t.kind) {
      case Test::Kind::kTrue:
        return true;
      case Test::Kind::kFalse:
        return false;
      case Test::Kind::kNot:
        return !Check(t.children[0]);
      case Test::Kind::kAllOf:
        return std::all_of(t.children.begin(), t.children.end(),
                           [&](const Test& x) { return Check(x); });
      case Test::Kind::kAnyOf:
        return std::any_of(t.children.begin(), t.children.end(),
                           [&](const Test& x) { return Check(x); });
      case Test::Kind::kHeader:
        return HeaderTest(t);
      case Test::Kind::kAddress:
        return AddressTest(t);
      case Test::Kind::kEnvelope:
        return EnvelopeTest(t);
      case Test::Kind::kExists:
        return std::all_of(t.names.begin(), t.names.end(),
                           [&](const std::string& name) { return HasHeader(name); });
      case Test::Kind::kSize:
        return t.over ? message_.size > t.limit : message_.size < t.limit;
      case Test::Kind::kBody:
        return internal::MatchAny(t.match, Body(t.transform));
      case Test::Kind::kHasFlag:
        return std::any_of(flags_.begin(), flags_.end(),
                           [&](const std::string& f) { return internal::MatchAny(t.match, f); });
    }
    return false;
  }

  bool HasHeader(std::string_view name) const {
    return std::any_of(message_.headers.begin(), message_.headers.end(),
                       [&](const HeaderField& f) { return EqualsIgnoreCase(f.name, name); });
  }

  bool HeaderTest(const Test& t) {
    for (const std::string& name : t.names) {
      for (const HeaderField& f : message_.headers) {
        if (!EqualsIgnoreCase(f.name, name)) continue;
        if (internal::MatchAny(t.match, mail::DecodeHeader(f.value))) return true;
      }
    }
    return false;
  }

  bool AddressTest(const Test& t) {
    for (const std::string& name : t.names) {
      for (const HeaderField& f : message_.headers) {
        if (!EqualsIgnoreCase(f.name, name)) continue;
        mail::AddressList list = mail::ParseAddressList(f.value);
        for (const mail::Address* a : list.Mailboxes()) {
          std::optional<std::string> part = AddressPartOf({a->local_part, a->domain}, t.part);
          if (part.has_value() && internal::MatchAny(t.match, *part)) return true;
        }
      }
    }
    return false;
  }

  bool EnvelopeTest(const Test& t) {
    for (const std::string& name : t.names) {
      const std::string& address = name == "from" ? message_.envelope_from : message_.envelope_to;
      // RFC 5228 §5.4: the null reverse-path is "" whatever the part.
      if (address.empty() || address == "<>") {
        if (internal::MatchAny(t.match, "")) return true;
        continue;
      }
      std::optional<std::string> part = AddressPartOf(SplitEnvelope(address), t.part);
      if (part.has_value() && internal::MatchAny(t.match, *part)) return true;
    }
    return false;
  }

  const std::string& Body(internal::BodyTransform transform) {
    std::optional<std::string>& cache =
        transform == internal::BodyTransform::kRaw ? body_raw_ : body_text_;
    if (!cache.has_value()) {
      const auto& accessor =
          transform == internal::BodyTransform::kRaw ? message_.body_raw : message_.body_text;
      cache = accessor ? accessor() : std::string();
    }
    return *cache;
  }

  const MessageContext& message_;
  const EvaluateOptions& options_;
  std::vector<Action> actions_;
  std::vector<std::string> flags_;
  bool implicit_keep_ = true;
  std::optional<RuntimeError> error_;
  std::optional<std::string> body_text_;
  std::optional<std::string> body_raw_;
};

}  // namespace

bool Actions::Delivers() const {
  return std::any_of(actions.begin(), actions.end(), [](const Action& a) {
    return a.kind == ActionKind::kKeep || a.kind == ActionKind::kFileInto;
  });
}

bool Actions::Rejected() const {
  return std::any_of(actions.begin(), actions.end(),
                     [](const Action& a) { return a.kind == ActionKind::kReject; });
}

Actions Evaluate(const Script& script, const MessageContext& message,
                 const EvaluateOptions& options) {
  return Evaluator(message, options).Run(EvaluateAccess::ProgramOf(script).commands);
}

std::string VacationMemoryKey(const Vacation& vacation, std::string_view sender) {
  return Fnv1aHex(absl::StrCat(vacation.handle, std::string(1, '\0'), Lower(sender)));
}

}  // namespace mailgrid::sieve
