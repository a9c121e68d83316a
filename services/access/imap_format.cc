// FETCH data (ENVELOPE, BODYSTRUCTURE, FLAGS, INTERNALDATE) written from
// mailstored's parsed structures (message.proto), RFC 3501 §7.4.2.
#include <optional>

#include "absl/strings/ascii.h"
#include "libs/imap/datetime.h"
#include "services/access/imap_session_internal.h"

namespace mailgrid::access {
namespace {

std::optional<std::string_view> Opt(bool has, const std::string& v) {
  if (!has) return std::nullopt;
  return std::string_view(v);
}

void WriteAddresses(const google::protobuf::RepeatedPtrField<ms::EnvelopeAddress>& list,
                    imap::ResponseWriter& w) {
  if (list.empty()) {
    w.Nil();
    return;
  }
  w.Open();
  for (const ms::EnvelopeAddress& a : list) {
    w.Open()
        .NString(Opt(a.has_name(), a.name()))
        .NString(Opt(a.has_route(), a.route()))
        .NString(Opt(a.has_mailbox(), a.mailbox()))
        .NString(Opt(a.has_host(), a.host()))
        .Close();
  }
  w.Close();
}

void WriteParams(const google::protobuf::RepeatedPtrField<ms::Parameter>& params,
                 imap::ResponseWriter& w) {
  if (params.empty()) {
    w.Nil();
    return;
  }
  w.Open();
  for (const ms::Parameter& p : params) w.String(absl::AsciiStrToUpper(p.name())).String(p.value());
  w.Close();
}

void WriteExtension(const ms::BodyPart& p, imap::ResponseWriter& w) {
  if (p.has_disposition()) {
    w.Open().String(absl::AsciiStrToUpper(p.disposition()));
    WriteParams(p.disposition_params(), w);
    w.Close();
  } else {
    w.Nil();
  }
  if (p.language().empty()) {
    w.Nil();
  } else if (p.language_size() == 1) {
    w.String(p.language(0));
  } else {
    w.Open();
    for (const std::string& l : p.language()) w.String(l);
    w.Close();
  }
  w.NString(Opt(p.has_location(), p.location()));
}

}  // namespace

void WriteEnvelope(const ms::Envelope& e, imap::ResponseWriter& w) {
  w.Open();
  w.NString(Opt(e.has_date(), e.date()));
  w.NString(Opt(e.has_subject(), e.subject()));
  WriteAddresses(e.from(), w);
  // RFC 3501: absent Sender and Reply-To are sent as From.
  WriteAddresses(e.sender().empty() ? e.from() : e.sender(), w);
  WriteAddresses(e.reply_to().empty() ? e.from() : e.reply_to(), w);
  WriteAddresses(e.to(), w);
  WriteAddresses(e.cc(), w);
  WriteAddresses(e.bcc(), w);
  w.NString(Opt(e.has_in_reply_to(), e.in_reply_to()));
  w.NString(Opt(e.has_message_id(), e.message_id()));
  w.Close();
}

void WriteBodyStructure(const ms::BodyPart& p, bool extended, imap::ResponseWriter& w) {
  std::string type = absl::AsciiStrToUpper(p.type().empty() ? "text" : p.type());
  std::string subtype = absl::AsciiStrToUpper(p.subtype().empty() ? "plain" : p.subtype());
  w.Open();
  if (type == "MULTIPART" && !p.parts().empty()) {
    for (const ms::BodyPart& c : p.parts()) WriteBodyStructure(c, extended, w);
    w.String(subtype);
    if (extended) {
      WriteParams(p.params(), w);
      WriteExtension(p, w);
    }
    w.Close();
    return;
  }
  if (type == "MULTIPART") type = "TEXT", subtype = "PLAIN";  // never an empty multipart
  w.String(type).String(subtype);
  WriteParams(p.params(), w);
  w.NString(Opt(p.has_content_id(), p.content_id()));
  w.NString(Opt(p.has_description(), p.description()));
  w.String(absl::AsciiStrToUpper(p.encoding().empty() ? "7bit" : p.encoding()));
  w.Number(p.size());
  if (type == "MESSAGE" && subtype == "RFC822") {
    WriteEnvelope(p.message_envelope(), w);
    WriteBodyStructure(p.message_body(), extended, w);
    w.Number(p.lines());
  } else if (type == "TEXT") {
    w.Number(p.lines());
  }
  if (extended) {
    w.NString(Opt(p.has_md5(), p.md5()));
    WriteExtension(p, w);
  }
  w.Close();
}

std::vector<std::string> ImapFlags(const google::protobuf::RepeatedPtrField<std::string>& flags,
                                   bool recent) {
  std::vector<std::string> out;
  for (const std::string& f : flags) {
    if (imap::IsAtom(f) || (f.size() > 1 && f[0] == '\\' && imap::IsAtom(f.substr(1)))) {
      out.push_back(f);
    }
  }
  if (recent) out.push_back("\\Recent");
  return out;
}

std::string InternalDate(int64_t seconds) {
  int64_t days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400;
  int64_t rem = seconds - days * 86400;
  // Civil from days (Howard Hinnant).
  int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t y0 = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  imap::DateTime t;
  t.date.year = static_cast<int>(y0 + (m <= 2));
  t.date.month = static_cast<int>(m);
  t.date.day = static_cast<int>(d);
  t.hour = static_cast<int>(rem / 3600);
  t.minute = static_cast<int>(rem / 60 % 60);
  t.second = static_cast<int>(rem % 60);
  return imap::FormatDateTime(t);
}

}  // namespace mailgrid::access
