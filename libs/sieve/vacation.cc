// When an auto-reply may go out (RFC 5230 §4.5-4.6, RFC 3834 §2) and what
// it looks like (RFC 5230 §5, RFC 3834 §3).
#include <set>

#include "absl/strings/str_cat.h"
#include "libs/mail/address.h"
#include "libs/mail/header.h"
#include "libs/mail/rfc2047.h"
#include "libs/sieve/sieve.h"

namespace mailgrid::sieve {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// "Local+detail@Domain" → "local@domain": the comparison form of an
// address for "is this one of mine" (subaddresses are the user's too).
std::string Normalize(std::string_view local, std::string_view domain) {
  std::string l = Lower(local.substr(0, local.find('+')));
  return domain.empty() ? l : absl::StrCat(l, "@", Lower(domain));
}

std::string NormalizeEnvelope(std::string_view address) {
  if (address.size() >= 2 && address.front() == '<' && address.back() == '>') {
    address = address.substr(1, address.size() - 2);
  }
  size_t at = address.rfind('@');
  if (at == std::string_view::npos) return Normalize(address, "");
  return Normalize(address.substr(0, at), address.substr(at + 1));
}

// Addresses written as "Name <a@b>" in :addresses or own_addresses work too.
void AddOwn(std::set<std::string>& own, std::string_view text) {
  mail::AddressList list = mail::ParseAddressList(text);
  for (const mail::Address* a : list.Mailboxes()) {
    if (!a->local_part.empty()) own.insert(Normalize(a->local_part, a->domain));
  }
}

const std::string* FindHeader(const MessageContext& m, std::string_view name) {
  for (const HeaderField& f : m.headers) {
    if (mail::HeaderNameEquals(f.name, name)) return &f.value;
  }
  return nullptr;
}

bool Refuse(std::string* why, std::string_view reason) {
  if (why != nullptr) *why = std::string(reason);
  return false;
}

std::string NoLineBreaks(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != '\r' && c != '\n' && c != '\0') out.push_back(c);
  }
  return out;
}

}  // namespace

bool ShouldSendVacation(const MessageContext& message, const Vacation& vacation,
                        const std::vector<std::string>& own_addresses, std::string* why) {
  std::string sender = NormalizeEnvelope(message.envelope_from);
  if (message.envelope_from.empty() || message.envelope_from == "<>") {
    return Refuse(why, "null sender");
  }
  if (const std::string* auto_submitted = FindHeader(message, "Auto-Submitted")) {
    std::string value = Lower(*auto_submitted);
    value = value.substr(0, value.find_first_of(" \t;("));
    if (value != "no") return Refuse(why, "Auto-Submitted");
  }
  for (const HeaderField& f : message.headers) {
    std::string name = Lower(f.name);
    if (name.rfind("list-", 0) == 0) return Refuse(why, "mailing list (List-*)");
  }
  if (const std::string* precedence = FindHeader(message, "Precedence")) {
    std::string value = Lower(*precedence);
    if (value == "bulk" || value == "list" || value == "junk") {
      return Refuse(why, "Precedence: " + value);
    }
  }
  std::string local = sender.substr(0, sender.find('@'));
  if (local == "mailer-daemon" || local == "listserv" || local == "majordomo" ||
      local.rfind("owner-", 0) == 0 ||
      (local.size() >= 8 && local.compare(local.size() - 8, 8, "-request") == 0)) {
    return Refuse(why, "sender is a mailing list or mailer daemon");
  }
  std::set<std::string> own;
  for (const std::string& a : own_addresses) AddOwn(own, a);
  for (const std::string& a : vacation.addresses) AddOwn(own, a);
  if (!message.envelope_to.empty()) own.insert(NormalizeEnvelope(message.envelope_to));
  if (own.count(sender)) return Refuse(why, "sender is the user");
  static constexpr std::string_view kRecipientFields[] = {"to",        "cc",        "bcc",
                                                          "resent-to", "resent-cc", "resent-bcc"};
  for (const HeaderField& f : message.headers) {
    bool recipient_field = false;
    for (std::string_view name : kRecipientFields) {
      recipient_field = recipient_field || mail::HeaderNameEquals(f.name, name);
    }
    if (!recipient_field) continue;
    mail::AddressList list = mail::ParseAddressList(f.value);
    for (const mail::Address* a : list.Mailboxes()) {
      if (own.count(Normalize(a->local_part, a->domain))) return true;
    }
  }
  return Refuse(why, "the user is not in To/Cc");
}

std::string BuildVacationReply(const MessageContext& message, const Vacation& vacation,
                               std::string_view user_address, std::string_view date,
                               std::string_view message_id) {
  std::string from = NoLineBreaks(vacation.from.empty() ? user_address : vacation.from);
  std::string subject = vacation.subject;
  if (subject.empty()) {
    const std::string* original = FindHeader(message, "Subject");
    subject = absl::StrCat("Auto: ", original ? mail::DecodeHeader(*original) : "");
  }
  std::string to = message.envelope_from;
  if (to.size() >= 2 && to.front() == '<' && to.back() == '>') to = to.substr(1, to.size() - 2);
  std::string out;
  out += mail::FoldHeaderField("From", from);
  out += mail::FoldHeaderField("To", NoLineBreaks(to));
  out += mail::FoldHeaderField("Subject", mail::EncodeHeaderText(subject));
  out += mail::FoldHeaderField("Date", NoLineBreaks(date));
  out += mail::FoldHeaderField("Message-ID", NoLineBreaks(message_id));
  if (const std::string* id = FindHeader(message, "Message-ID")) {
    std::string original = NoLineBreaks(*id);
    out += mail::FoldHeaderField("In-Reply-To", original);
    const std::string* refs = FindHeader(message, "References");
    out += mail::FoldHeaderField(
        "References", refs ? absl::StrCat(NoLineBreaks(*refs), " ", original) : original);
  }
  out += "Auto-Submitted: auto-replied (vacation)\r\n";
  out += "MIME-Version: 1.0\r\n";
  std::string body = mail::ToCrlf(vacation.reason);
  if (vacation.mime) {
    // The reason is a whole MIME entity: its own header, blank line, body.
    out += body;
  } else {
    out += "Content-Type: text/plain; charset=utf-8\r\n";
    out += "Content-Transfer-Encoding: 8bit\r\n\r\n";
    out += body;
  }
  if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
  return out;
}

}  // namespace mailgrid::sieve
