// ENVELOPE, BODY and BODYSTRUCTURE writers (RFC 3501 §7.4.2).
#include "libs/mail/imap_format.h"

#include "absl/strings/str_cat.h"
#include "libs/mail/ascii.h"
#include "libs/mail/charset.h"

namespace mailgrid::mail {
namespace {

using ascii::Upper;

void AppendAddress(const std::optional<std::string>& name, const std::optional<std::string>& adl,
                   const std::optional<std::string>& mailbox,
                   const std::optional<std::string>& host, const ImapFormatOptions& o,
                   std::string* out) {
  out->push_back('(');
  AppendImapNString(name, o, out);
  out->push_back(' ');
  AppendImapNString(adl, o, out);
  out->push_back(' ');
  AppendImapNString(mailbox, o, out);
  out->push_back(' ');
  AppendImapNString(host, o, out);
  out->push_back(')');
}

std::optional<std::string> NonEmpty(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return s;
}

bool HasMailbox(const std::optional<AddressList>& list) {
  if (!list) return false;
  for (const Address& a : list->items) {
    if (a.is_mailbox()) return true;
  }
  return false;
}

void AppendAddressList(const std::optional<AddressList>& list, const ImapFormatOptions& o,
                       std::string* out) {
  if (!list || list->items.empty()) {
    out->append("NIL");
    return;
  }
  out->push_back('(');
  for (const Address& a : list->items) {
    switch (a.kind) {
      case Address::Kind::kGroupStart:
        // RFC 3501: a group start has NIL host and the group name as mailbox.
        AppendAddress(std::nullopt, std::nullopt, a.raw_name, std::nullopt, o, out);
        break;
      case Address::Kind::kGroupEnd:
        AppendAddress(std::nullopt, std::nullopt, std::nullopt, std::nullopt, o, out);
        break;
      case Address::Kind::kMailbox:
        // A NIL host would read as a group start; say what is missing.
        AppendAddress(NonEmpty(a.raw_name), NonEmpty(a.route),
                      a.local_part.empty() ? std::string("MISSING_MAILBOX") : a.local_part,
                      a.domain.empty() ? std::string("MISSING_DOMAIN") : a.domain, o, out);
        break;
    }
  }
  out->push_back(')');
}

void AppendParams(const std::vector<MimeParameter>& params, bool default_charset,
                  const ImapFormatOptions& o, std::string* out) {
  if (params.empty() && !default_charset) {
    out->append("NIL");
    return;
  }
  out->push_back('(');
  bool first = true;
  for (const MimeParameter& p : params) {
    if (!first) out->push_back(' ');
    first = false;
    AppendImapString(p.name, o, out);
    out->push_back(' ');
    AppendImapString(p.value, o, out);
  }
  if (default_charset) {
    if (!first) out->push_back(' ');
    out->append("\"CHARSET\" \"US-ASCII\"");
  }
  out->push_back(')');
}

// body-fld-dsp SP body-fld-lang SP body-fld-loc: shared by both kinds.
void AppendDispLangLoc(const ContentInfo& c, const ImapFormatOptions& o, std::string* out) {
  out->push_back(' ');
  if (c.disposition.empty()) {
    out->append("NIL");
  } else {
    out->push_back('(');
    AppendImapString(Upper(c.disposition), o, out);
    out->push_back(' ');
    AppendParams(c.disposition_params, false, o, out);
    out->push_back(')');
  }
  out->push_back(' ');
  if (c.language.empty()) {
    out->append("NIL");
  } else {
    out->push_back('(');
    for (size_t i = 0; i < c.language.size(); ++i) {
      if (i > 0) out->push_back(' ');
      AppendImapString(c.language[i], o, out);
    }
    out->push_back(')');
  }
  out->push_back(' ');
  AppendImapNString(c.location, o, out);
}

class BodyWriter {
 public:
  BodyWriter(const Message& msg, bool extended, const ImapFormatOptions& o, std::string* out)
      : msg_(msg), extended_(extended), o_(o), out_(out) {}

  void Write(uint32_t index) {
    const Part& p = msg_.parts[index];
    out_->push_back('(');
    if (p.kind == PartKind::kMultipart) {
      Multipart(p);
    } else {
      OnePart(p);
    }
    out_->push_back(')');
  }

 private:
  void Multipart(const Part& p) {
    if (p.children.empty()) {
      // RFC 3501 needs at least one body: an empty text part stands in.
      out_->append("(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0");
      out_->append(extended_ ? " NIL NIL NIL NIL)" : ")");
    }
    for (uint32_t c : p.children) Write(c);
    out_->push_back(' ');
    AppendImapString(Upper(p.content.subtype), o_, out_);
    if (!extended_) return;
    out_->push_back(' ');
    AppendParams(p.content.params, false, o_, out_);
    AppendDispLangLoc(p.content, o_, out_);
  }

  void OnePart(const Part& p) {
    const ContentInfo& c = p.content;
    bool text = c.type == "text";
    bool message = p.kind == PartKind::kMessage;
    AppendImapString(Upper(c.type), o_, out_);
    out_->push_back(' ');
    AppendImapString(Upper(c.subtype), o_, out_);
    out_->push_back(' ');
    AppendParams(c.params, text && FindParameter(c.params, "charset") == nullptr, o_, out_);
    out_->push_back(' ');
    AppendImapNString(c.id, o_, out_);
    out_->push_back(' ');
    AppendImapNString(c.description, o_, out_);
    out_->push_back(' ');
    AppendImapString(c.encoding.empty() ? "7BIT" : Upper(c.encoding), o_, out_);
    absl::StrAppend(out_, " ", p.body.size);
    if (message) {
      const Part& inner = msg_.parts[p.children.front()];
      out_->push_back(' ');
      out_->append(FormatEnvelope(*inner.envelope, o_));
      out_->push_back(' ');
      Write(p.children.front());
      absl::StrAppend(out_, " ", p.body_lines);
    } else if (c.type == "message" && c.subtype == "rfc822") {
      // Not parsed (transfer-encoded): the grammar still wants an envelope
      // and a body, so empty ones stand in (Dovecot writes the same).
      out_->append(" (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"PLAIN\" ");
      out_->append("(\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0");
      out_->append(extended_ ? " NIL NIL NIL NIL)" : ")");
      absl::StrAppend(out_, " ", p.body_lines);
    } else if (text) {
      absl::StrAppend(out_, " ", p.body_lines);
    }
    if (!extended_) return;
    out_->push_back(' ');
    AppendImapNString(c.md5, o_, out_);
    AppendDispLangLoc(c, o_, out_);
  }

  const Message& msg_;
  bool extended_;
  const ImapFormatOptions& o_;
  std::string* out_;
};

}  // namespace

void AppendImapString(std::string_view value, const ImapFormatOptions& options, std::string* out) {
  bool eight_bit = false;
  for (char c : value) eight_bit |= static_cast<unsigned char>(c) >= 0x80;
  bool quoted = !eight_bit || (options.utf8 && IsValidUtf8(value));
  if (!quoted) {
    absl::StrAppend(out, "{", value.size(), "}\r\n");
    for (char c : value) out->push_back(c == '\0' ? ' ' : c);
    return;
  }
  out->push_back('"');
  for (char c : value) {
    if (c == '\0' || c == '\r' || c == '\n') c = ' ';
    if (c == '"' || c == '\\') out->push_back('\\');
    out->push_back(c);
  }
  out->push_back('"');
}

void AppendImapNString(const std::optional<std::string>& value, const ImapFormatOptions& options,
                       std::string* out) {
  if (!value) {
    out->append("NIL");
    return;
  }
  AppendImapString(*value, options, out);
}

std::string FormatEnvelope(const Envelope& e, const ImapFormatOptions& o) {
  std::string out = "(";
  AppendImapNString(e.date, o, &out);
  out.push_back(' ');
  AppendImapNString(e.subject, o, &out);
  out.push_back(' ');
  AppendAddressList(e.from, o, &out);
  out.push_back(' ');
  AppendAddressList(HasMailbox(e.sender) ? e.sender : e.from, o, &out);
  out.push_back(' ');
  AppendAddressList(HasMailbox(e.reply_to) ? e.reply_to : e.from, o, &out);
  out.push_back(' ');
  AppendAddressList(e.to, o, &out);
  out.push_back(' ');
  AppendAddressList(e.cc, o, &out);
  out.push_back(' ');
  AppendAddressList(e.bcc, o, &out);
  out.push_back(' ');
  AppendImapNString(e.in_reply_to, o, &out);
  out.push_back(' ');
  AppendImapNString(e.message_id, o, &out);
  out.push_back(')');
  return out;
}

std::string FormatBodyStructure(const Message& message, bool extended,
                                const ImapFormatOptions& options) {
  std::string out;
  BodyWriter(message, extended, options, &out).Write(0);
  return out;
}

}  // namespace mailgrid::mail
