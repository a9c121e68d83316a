// RFC 5322 §3.4 address lists (From, To, Cc, Reply-To, ...): display names,
// quoted strings, comments, groups, obsolete routes and RFC 6532 UTF-8, into
// {display name, local part, domain}.
//
// SECURITY: the input is hostile. Parsing never fails: what can be read is
// returned, what cannot is skipped to the next ',' (outside quotes, comments
// and angle brackets) and AddressList::malformed is set. Linear time, no
// recursion; nested comments are counted. Parsed parts never contain CR or
// LF; the decoded display name is valid UTF-8.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libs/mail/rfc2047.h"

namespace mailgrid::mail {

struct Address {
  enum class Kind : uint8_t {
    kMailbox,
    kGroupStart,  // "name:" — `name`/`raw_name` hold the group's name
    kGroupEnd,    // ";"
  };
  Kind kind = Kind::kMailbox;
  // Display name (or group name) decoded to UTF-8 (RFC 2047 words decoded,
  // also inside quotes, as clients expect). For "user@host (Comment)" the
  // comment. Empty when there is none.
  std::string name;
  // The same as written: quotes and backslashes removed, words joined by
  // single spaces, encoded-words left encoded. IMAP ENVELOPE sends this.
  std::string raw_name;
  std::string route;       // obsolete source route "@a.example,@b.example", or ""
  std::string local_part;  // quotes removed: "\"john doe\"@x" gives `john doe`
  std::string domain;      // as written ("Example.COM", "[192.0.2.1]"); "" if missing
  // False when a local part or domain is missing or the syntax was repaired.
  bool valid = true;

  bool is_mailbox() const { return kind == Kind::kMailbox; }
  // "local@domain", the local part quoted when it is not a dot-atom;
  // "local" alone when there is no domain.
  std::string AddrSpec() const;
  // The domain with ASCII letters lower-cased.
  std::string NormalizedDomain() const;
};

struct AddressList {
  // In order, with group markers around the members of each group (the
  // shape IMAP ENVELOPE wants).
  std::vector<Address> items;
  bool malformed = false;  // something was skipped or repaired

  // The mailboxes only (group members included), in order.
  std::vector<const Address*> Mailboxes() const;
};

struct AddressOptions {
  DecodeOptions decode;         // for display names
  size_t max_addresses = 5000;  // items beyond are dropped (malformed set)
};

// Parses an unfolded header value.
AddressList ParseAddressList(std::string_view value, const AddressOptions& options = {});

// Writes one mailbox for a header we generate: "Name <local@domain>" with the
// name encoded as needed (quoted, or RFC 2047 for non-ASCII), or
// "local@domain" when the name is empty. CR, LF and NUL never pass.
std::string FormatMailbox(std::string_view display_name_utf8, std::string_view local_part,
                          std::string_view domain);

// A whole list, comma-separated, groups written as "name: a, b;".
std::string FormatAddressList(const AddressList& list);

}  // namespace mailgrid::mail
