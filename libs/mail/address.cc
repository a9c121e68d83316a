#include "libs/mail/address.h"

#include <utility>

#include "libs/mail/lexer.h"

namespace mailgrid::mail {
namespace {

// One word of a phrase or local part as it was read.
struct Word {
  std::string text;
  bool quoted = false;
  bool dot = false;
  bool space_before = false;
};

struct Phrase {
  std::vector<Word> words;
  std::string comment;  // the last comment seen around it

  bool empty() const { return words.empty(); }

  // Display-name form: words separated by one space where the message had
  // white space or comments between them.
  std::string Joined() const {
    std::string out;
    for (const Word& w : words) {
      if (w.space_before && !out.empty() && !w.dot) out.push_back(' ');
      out += w.text;
    }
    return out;
  }

  // Local-part form: CFWS between words is not part of the address.
  std::string Concatenated() const {
    std::string out;
    for (const Word& w : words) out += w.text;
    return out;
  }
};

bool IsDotAtom(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '.') {
      if (s[i + 1] == '.') return false;
    } else if (!IsAtext(s[i])) {
      return false;
    }
  }
  return true;
}

std::string StripControls(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != '\r' && c != '\n' && c != '\0') out.push_back(c);
  }
  return out;
}

class AddressParser {
 public:
  AddressParser(std::string_view value, const AddressOptions& options)
      : lx_(value), options_(options) {}

  AddressList Run() {
    for (;;) {
      lx_.SkipCfws();
      if (lx_.AtEnd()) break;
      if (lx_.Consume(',')) continue;
      if (Full()) break;
      ParseAddress(false);
    }
    if (lx_.error()) out_.malformed = true;
    return std::move(out_);
  }

 private:
  bool Full() {
    if (out_.items.size() < options_.max_addresses) return false;
    out_.malformed = true;
    return true;
  }

  // Words, quoted strings and dots up to the first special.
  Phrase ReadPhrase() {
    Phrase p;
    for (;;) {
      Word w;
      w.space_before = lx_.SkipCfws(&p.comment);
      char c = lx_.Peek();
      if (lx_.AtEnd()) break;
      if (c == '"') {
        w.quoted = true;
        lx_.QuotedString(&w.text);
      } else if (IsAtext(c)) {
        lx_.Atom(&w.text);
      } else if (c == '.') {
        lx_.Advance();
        w.text = ".";
        w.dot = true;
      } else {
        break;
      }
      p.words.push_back(std::move(w));
    }
    return p;
  }

  // Comments inside or after the domain go to *comment when given.
  std::string ReadDomain(std::string* comment = nullptr) {
    std::string domain;
    lx_.SkipCfws(comment);
    if (lx_.Peek() == '[') {
      lx_.DomainLiteral(&domain);
      return domain;
    }
    for (;;) {
      if (!lx_.Atom(&domain)) break;
      lx_.SkipCfws(comment);
      if (!lx_.Consume('.')) break;
      domain.push_back('.');
      lx_.SkipCfws(comment);
    }
    return domain;
  }

  void SetName(Address* a, const Phrase& phrase) {
    a->raw_name = StripControls(phrase.Joined());
    a->name = DecodeHeaderText(a->raw_name, options_.decode).text;
  }

  void Emit(Address a) {
    if (!a.valid) out_.malformed = true;
    if (!Full()) out_.items.push_back(std::move(a));
  }

  // After an address: anything but the next delimiter is garbage.
  void ExpectDelimiter(bool in_group, std::string* comment) {
    lx_.SkipCfws(comment);
    if (lx_.AtEnd() || lx_.Peek() == ',' || (in_group && lx_.Peek() == ';')) return;
    out_.malformed = true;
    lx_.SkipTo(in_group ? ",;" : ",");
  }

  void ParseAddress(bool in_group) {
    size_t start = lx_.pos();
    Phrase phrase = ReadPhrase();
    char c = lx_.AtEnd() ? '\0' : lx_.Peek();
    if (c == ':' && !in_group && !phrase.empty()) {
      lx_.Advance();
      ParseGroup(phrase);
      return;
    }
    if (c == '<') {
      Address a;
      SetName(&a, phrase);
      ParseAngle(&a);
      if (a.local_part.empty() && a.domain.empty() && a.raw_name.empty()) {
        out_.malformed = true;  // "<>" or garbage in brackets: nothing to show
      } else {
        Emit(std::move(a));
      }
      ExpectDelimiter(in_group, nullptr);
      return;
    }
    if (c == '@' && !phrase.empty()) {
      Address a;
      a.local_part = StripControls(phrase.Concatenated());
      lx_.Advance();
      std::string comment = phrase.comment;
      a.domain = StripControls(ReadDomain(&comment));
      if (a.domain.empty()) a.valid = false;
      ExpectDelimiter(in_group, &comment);
      if (!comment.empty()) {
        Phrase name;
        name.words.push_back(Word{comment, true, false, false});
        SetName(&a, name);
      }
      Emit(std::move(a));
      return;
    }
    bool at_delimiter = c == '\0' || c == ',' || (in_group && c == ';');
    if (at_delimiter && !phrase.empty()) {  // "undisclosed" or a bare local part
      Address a;
      a.local_part = StripControls(phrase.Concatenated());
      a.valid = false;
      Emit(std::move(a));
      return;
    }
    out_.malformed = true;
    lx_.SkipTo(in_group ? ",;" : ",");
    if (lx_.pos() == start) lx_.Advance();
  }

  void ParseAngle(Address* a) {
    lx_.Advance();  // '<'
    lx_.SkipCfws();
    if (lx_.Peek() == '@') ParseRoute(a);
    Phrase local = ReadPhrase();
    a->local_part = StripControls(local.Concatenated());
    if (lx_.Consume('@')) a->domain = StripControls(ReadDomain());
    lx_.SkipCfws();
    if (a->local_part.empty() || a->domain.empty()) a->valid = false;
    if (lx_.Consume('>')) return;
    a->valid = false;
    lx_.SkipTo(">,");
    lx_.Consume('>');
  }

  // obs-route: "@a,@b:" before the local part.
  void ParseRoute(Address* a) {
    while (lx_.Consume('@')) {
      if (!a->route.empty()) a->route.push_back(',');
      a->route += "@" + StripControls(ReadDomain());
      lx_.SkipCfws();
      while (lx_.Consume(',')) lx_.SkipCfws();
    }
    if (!lx_.Consume(':')) a->valid = false;
  }

  void ParseGroup(const Phrase& phrase) {
    Address start;
    start.kind = Address::Kind::kGroupStart;
    SetName(&start, phrase);
    Emit(std::move(start));
    for (;;) {
      lx_.SkipCfws();
      if (lx_.AtEnd()) {
        out_.malformed = true;  // no ';'
        break;
      }
      if (lx_.Consume(';')) break;
      if (lx_.Consume(',')) continue;
      if (Full()) return;
      ParseAddress(true);
    }
    Address end;
    end.kind = Address::Kind::kGroupEnd;
    Emit(std::move(end));
  }

  Lexer lx_;
  const AddressOptions& options_;
  AddressList out_;
};

std::string QuoteLocalPart(std::string_view local) {
  if (IsDotAtom(local)) return std::string(local);
  std::string out = "\"";
  for (char c : local) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace

std::string Address::AddrSpec() const {
  std::string out = QuoteLocalPart(local_part);
  if (!domain.empty()) out += "@" + domain;
  return out;
}

std::string Address::NormalizedDomain() const {
  std::string out = domain;
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

std::vector<const Address*> AddressList::Mailboxes() const {
  std::vector<const Address*> out;
  for (const Address& a : items) {
    if (a.is_mailbox()) out.push_back(&a);
  }
  return out;
}

AddressList ParseAddressList(std::string_view value, const AddressOptions& options) {
  return AddressParser(value, options).Run();
}

std::string FormatMailbox(std::string_view display_name_utf8, std::string_view local_part,
                          std::string_view domain) {
  std::string spec = QuoteLocalPart(StripControls(local_part));
  std::string clean_domain = StripControls(domain);
  if (!clean_domain.empty()) spec += "@" + clean_domain;
  std::string name = EncodePhrase(display_name_utf8);
  if (name.empty()) return spec;
  return name + " <" + spec + ">";
}

std::string FormatAddressList(const AddressList& list) {
  std::string out;
  bool group_first = false;
  for (const Address& a : list.items) {
    switch (a.kind) {
      case Address::Kind::kGroupStart:
        if (!out.empty()) out += ", ";
        out += EncodePhrase(a.name) + ":";
        group_first = true;
        break;
      case Address::Kind::kGroupEnd:
        out += ";";
        group_first = false;
        break;
      case Address::Kind::kMailbox:
        if (group_first) {
          out += " ";
        } else if (!out.empty()) {
          out += ", ";
        }
        group_first = false;
        out += FormatMailbox(a.name, a.local_part, a.domain);
        break;
    }
  }
  return out;
}

}  // namespace mailgrid::mail
