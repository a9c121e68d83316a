// DKIM signing (RFC 6376 §5) and the header hash input both sides share.
#include <map>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "libs/mail/header.h"
#include "libs/mailauth/dkim.h"
#include "libs/mailauth/dkim_crypto.h"
#include "libs/mailauth/dkim_internal.h"

namespace mailgrid::mailauth {
namespace internal {

std::string HeaderHashInput(std::string_view message, const mail::Header& header,
                            const std::vector<std::string>& names, DkimCanon canon,
                            std::string_view signature_line) {
  std::string out;
  std::map<std::string, size_t> used;  // lower-case name -> instances consumed from the bottom
  for (const std::string& name : names) {
    std::vector<const mail::HeaderField*> all = header.All(name);
    size_t& n = used[absl::AsciiStrToLower(name)];
    if (n >= all.size()) continue;  // nonexistent (or oversigned): the null string
    const mail::HeaderField* f = all[all.size() - 1 - n];
    ++n;
    out += CanonHeaderLine(canon, f->line.In(message));
  }
  std::string sig = CanonHeaderLine(canon, StripSignatureValue(signature_line));
  sig.resize(sig.size() - 2);  // §3.7: the signature field is hashed without its CRLF
  out += sig;
  return out;
}

}  // namespace internal

namespace {

bool ValidName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_')
      return false;
  }
  return true;
}

// Appends unbreakable pieces, folding before a piece that would pass 78
// columns (RFC 5322 §2.1.1's "SHOULD").
class Folder {
 public:
  explicit Folder(std::string start) : out_(std::move(start)), column_(out_.size()) {}
  void Piece(std::string_view piece, bool space_before) {
    size_t need = piece.size() + (space_before ? 1 : 0);
    if (column_ + need > 78 && column_ > 1) {
      out_ += "\r\n\t";
      column_ = 1;
    } else if (space_before) {
      out_.push_back(' ');
      ++column_;
    }
    out_ += piece;
    column_ += piece.size();
  }
  void NewLine() {
    out_ += "\r\n\t";
    column_ = 1;
  }
  // A long value in chunks (base64 allows FWS anywhere).
  void Chunked(std::string_view value) {
    while (!value.empty()) {
      size_t room = column_ < 76 ? 76 - column_ : 0;
      if (room == 0) {
        NewLine();
        continue;
      }
      size_t n = std::min(room, value.size());
      out_ += value.substr(0, n);
      column_ += n;
      value.remove_prefix(n);
    }
  }
  std::string& text() { return out_; }

 private:
  std::string out_;
  size_t column_;
};

absl::Status CheckOptions(const DkimSignOptions& o) {
  if (!ValidName(o.domain) || !ValidName(o.selector))
    return absl::InvalidArgumentError("DKIM d= and s= must be domain names");
  if (o.identity.find_first_of(" \t\r\n;") != std::string::npos)
    return absl::InvalidArgumentError("DKIM i= must not contain white space or ';'");
  return absl::OkStatus();
}

// One signature over a message whose header is parsed and whose body hash
// (bh=, base64) is known.
absl::StatusOr<std::string> SignParsed(std::string_view message, const mail::Header& header,
                                       const std::string& bh, const DkimPrivateKey& key,
                                       const DkimSignOptions& o) {
  std::vector<std::string> names;
  for (const std::string& h : o.headers) {
    if (!mail::IsValidFieldName(h)) return absl::InvalidArgumentError("bad header name to sign");
    size_t count = header.All(h).size();
    for (size_t i = 0; i < count; ++i) names.push_back(h);
  }
  for (const std::string& h : o.oversign) names.push_back(h);

  auto canon_name = [](DkimCanon c) { return c == DkimCanon::kSimple ? "simple" : "relaxed"; };
  Folder f("DKIM-Signature:");
  f.Piece(absl::StrCat("v=1; a=", ToAbsl(DkimAlgorithmName(key.algorithm())), ";"), true);
  f.Piece(absl::StrCat("c=", canon_name(o.header_canon), "/", canon_name(o.body_canon), ";"), true);
  f.Piece(absl::StrCat("d=", o.domain, ";"), true);
  f.Piece(absl::StrCat("s=", o.selector, ";"), true);
  if (o.timestamp) f.Piece(absl::StrCat("t=", *o.timestamp, ";"), true);
  if (o.expiration) f.Piece(absl::StrCat("x=", *o.expiration, ";"), true);
  if (!o.identity.empty()) f.Piece(absl::StrCat("i=", o.identity, ";"), true);
  for (size_t i = 0; i < names.size(); ++i) {
    std::string piece =
        absl::StrCat(i == 0 ? "h=" : "", names[i], i + 1 < names.size() ? ":" : ";");
    f.Piece(piece, i == 0);
  }
  f.Piece("bh=", true);
  f.Chunked(absl::StrCat(bh, ";"));
  f.NewLine();
  f.text() += "b=";
  std::string field = f.text() + "\r\n";

  std::string input = internal::HeaderHashInput(message, header, names, o.header_canon, field);
  auto sig = internal::SignData(key.pkey(), key.algorithm(), input, key.sign_template());
  if (!sig.ok()) return sig.status();
  // The b= value on its own line(s), after the "b=" already hashed empty.
  Folder b("\tb=");
  b.Chunked(absl::Base64Escape(*sig));
  std::string out = f.text();
  out.resize(out.size() - 3);  // drop the "\tb=" we are about to rewrite
  out += b.text();
  out += "\r\n";
  return out;
}

}  // namespace

absl::StatusOr<std::string> DkimSign(std::string_view message, const DkimPrivateKey& key,
                                     const DkimSignOptions& o) {
  ASSIGN_OR_RETURN(std::vector<std::string> fields, DkimSignAll(message, {&key}, {o}));
  return std::move(fields.front());
}

absl::StatusOr<std::vector<std::string>> DkimSignAll(
    std::string_view message, const std::vector<const DkimPrivateKey*>& keys,
    const std::vector<DkimSignOptions>& options) {
  if (keys.size() != options.size())
    return absl::InvalidArgumentError("DkimSignAll: one DkimSignOptions per key");
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] == nullptr) return absl::InvalidArgumentError("DkimSignAll: null key");
    RETURN_IF_ERROR(CheckOptions(options[i]));
  }
  std::vector<std::string> out;
  if (keys.empty()) return out;
  auto header = mail::ParseHeader(message);
  if (!header.ok()) return header.status();
  if (header->First("From") == nullptr)
    return absl::InvalidArgumentError("cannot DKIM-sign a message without From");
  std::string_view body =
      header->missing_blank_line ? std::string_view() : message.substr(header->block.end());
  // bh= per body canonicalization, made the first time one is asked for.
  std::optional<std::string> bh[2];
  for (size_t i = 0; i < keys.size(); ++i) {
    const DkimSignOptions& o = options[i];
    std::optional<std::string>& hash = bh[o.body_canon == DkimCanon::kSimple ? 0 : 1];
    if (!hash) hash = absl::Base64Escape(internal::Sha256(CanonicalizeBody(o.body_canon, body)));
    ASSIGN_OR_RETURN(std::string field, SignParsed(message, *header, *hash, *keys[i], o));
    out.push_back(std::move(field));
  }
  return out;
}

}  // namespace mailgrid::mailauth
