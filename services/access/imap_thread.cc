#include "services/access/imap_thread.h"

#include <algorithm>
#include <cctype>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "libs/mail/header.h"
#include "libs/mail/rfc2047.h"

namespace mailgrid::access {
namespace {

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (absl::ascii_toupper(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

// subj-blob = "[" *BLOBCHAR "]" *WSP at s[pos]; returns the end or npos.
size_t Blob(std::string_view s, size_t pos) {
  if (pos >= s.size() || s[pos] != '[') return std::string_view::npos;
  size_t i = pos + 1;
  while (i < s.size() && s[i] != ']' && s[i] != '[') ++i;
  if (i >= s.size() || s[i] != ']') return std::string_view::npos;
  ++i;
  while (i < s.size() && IsWsp(s[i])) ++i;
  return i;
}

// subj-leader's first form, *subj-blob subj-refwd, at the start of s:
// subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":". Returns its
// length or 0.
size_t ReFwdLeader(std::string_view s) {
  size_t i = 0;
  for (size_t e; (e = Blob(s, i)) != std::string_view::npos;) i = e;
  std::string_view rest = s.substr(i);
  size_t word = 0;
  if (StartsWithNoCase(rest, "RE")) {
    word = 2;
  } else if (StartsWithNoCase(rest, "FWD")) {
    word = 3;
  } else if (StartsWithNoCase(rest, "FW")) {
    word = 2;
  } else {
    return 0;
  }
  i += word;
  while (i < s.size() && IsWsp(s[i])) ++i;
  if (size_t e = Blob(s, i); e != std::string_view::npos) i = e;
  if (i < s.size() && s[i] == ':') return i + 1;
  return 0;
}

bool HasNonWsp(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return !IsWsp(c); });
}

// "<id>" tokens of a Message-ID / References / In-Reply-To value, without
// the brackets and inner white space.
std::vector<std::string> MessageIds(std::string_view v) {
  std::vector<std::string> out;
  size_t i = 0;
  while ((i = v.find('<', i)) != std::string_view::npos) {
    size_t e = v.find('>', i + 1);
    if (e == std::string_view::npos) break;
    std::string id;
    for (char c : v.substr(i + 1, e - i - 1)) {
      if (!IsWsp(c) && c != '\r' && c != '\n') id.push_back(c);
    }
    if (!id.empty()) out.push_back(std::move(id));
    i = e + 1;
  }
  return out;
}

}  // namespace

BaseSubject ExtractBaseSubject(std::string_view raw_subject) {
  BaseSubject out;
  // (1) Decode encoded-words; tabs and continuations to spaces; runs of
  // spaces to one. Comparisons are ASCII case-insensitive: upper-case now.
  std::string decoded = mail::DecodeHeaderText(mail::Unfold(raw_subject)).text;
  std::string s;
  for (char c : decoded) {
    if (c == '\t' || c == '\r' || c == '\n') c = ' ';
    if (c == ' ' && !s.empty() && s.back() == ' ') continue;
    s.push_back(absl::ascii_toupper(static_cast<unsigned char>(c)));
  }
  std::string_view v = s;
  for (;;) {
    // (2) Trailing "(fwd)" and white space.
    for (;;) {
      if (!v.empty() && IsWsp(v.back())) {
        v.remove_suffix(1);
      } else if (v.size() >= 5 && v.substr(v.size() - 5) == "(FWD)") {
        v.remove_suffix(5);
        out.reply_or_fwd = true;
      } else {
        break;
      }
    }
    // (3)-(5) Leading white space, "Re:"/"Fwd:" with blobs, and a leading
    // blob when something is left after it.
    for (bool changed = true; changed;) {
      changed = false;
      while (!v.empty() && IsWsp(v.front())) {
        v.remove_prefix(1);
        changed = true;
      }
      if (size_t n = ReFwdLeader(v); n > 0) {
        v.remove_prefix(n);
        out.reply_or_fwd = true;
        changed = true;
        continue;
      }
      if (size_t e = Blob(v, 0); e != std::string_view::npos && HasNonWsp(v.substr(e))) {
        v.remove_prefix(e);
        changed = true;
      }
    }
    // (6) "[fwd: ... ]" around everything: unwrap and start over.
    if (v.size() >= 6 && v.substr(0, 5) == "[FWD:" && v.back() == ']') {
      v = v.substr(5, v.size() - 6);
      out.reply_or_fwd = true;
      continue;
    }
    break;
  }
  out.text = std::string(v);
  return out;
}

bool ParseSentDate(std::string_view value, int64_t* seconds) {
  // Comments out, then tokens split on white space and commas.
  std::string clean;
  int depth = 0;
  for (char c : value) {
    if (c == '(') ++depth;
    if (depth == 0) clean.push_back(c == ',' || c == '\t' || c == '\r' || c == '\n' ? ' ' : c);
    if (c == ')' && depth > 0) --depth;
  }
  std::vector<std::string> t;
  for (size_t i = 0; i < clean.size();) {
    while (i < clean.size() && clean[i] == ' ') ++i;
    size_t j = i;
    while (j < clean.size() && clean[j] != ' ') ++j;
    if (j > i) t.push_back(clean.substr(i, j - i));
    i = j;
  }
  size_t k = 0;
  if (k < t.size() && !t[k].empty() && std::isalpha(static_cast<unsigned char>(t[k][0]))) ++k;
  if (t.size() < k + 4) return false;
  int day = 0, year = 0;
  if (!absl::SimpleAtoi(t[k], &day) || day < 1 || day > 31) return false;
  static constexpr std::string_view kMonths[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                 "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
  std::string mon = absl::AsciiStrToUpper(t[k + 1].substr(0, 3));
  int month = 0;
  for (int m = 0; m < 12; ++m) {
    if (mon == kMonths[m]) month = m + 1;
  }
  if (month == 0 || !absl::SimpleAtoi(t[k + 2], &year) || year < 0) return false;
  if (t[k + 2].size() <= 2)
    year += year < 50 ? 2000 : 1900;
  else if (t[k + 2].size() == 3)
    year += 1900;
  int hh = 0, mm = 0, ss = 0;
  std::vector<std::string> hms;
  for (size_t i = 0, j; i <= t[k + 3].size(); i = j + 1) {
    j = t[k + 3].find(':', i);
    if (j == std::string::npos) j = t[k + 3].size();
    hms.push_back(t[k + 3].substr(i, j - i));
  }
  if (hms.size() < 2 || hms.size() > 3 || !absl::SimpleAtoi(hms[0], &hh) ||
      !absl::SimpleAtoi(hms[1], &mm) || (hms.size() == 3 && !absl::SimpleAtoi(hms[2], &ss)) ||
      hh > 23 || mm > 59 || ss > 60 || hh < 0 || mm < 0 || ss < 0) {
    return false;
  }
  int offset = 0;  // minutes east of UTC
  if (t.size() > k + 4) {
    const std::string& z = t[k + 4];
    int n = 0;
    if ((z[0] == '+' || z[0] == '-') && z.size() == 5 && absl::SimpleAtoi(z.substr(1), &n)) {
      offset = (n / 100) * 60 + n % 100;
      if (z[0] == '-') offset = -offset;
    } else {
      static const std::pair<std::string_view, int> kZones[] = {
          {"EST", -5}, {"EDT", -4}, {"CST", -6}, {"CDT", -5},
          {"MST", -7}, {"MDT", -6}, {"PST", -8}, {"PDT", -7}};
      std::string zu = absl::AsciiStrToUpper(z);
      for (const auto& [name, h] : kZones) {
        if (zu == name) offset = h * 60;
      }
    }
  }
  absl::CivilSecond cs(year, month, day, hh, mm, ss);
  if (cs.day() != day) return false;  // 31 Feb
  *seconds = absl::ToUnixSeconds(absl::FromCivil(cs, absl::UTCTimeZone())) - offset * 60;
  return true;
}

namespace {

struct Node {
  int msg = -1;  // index into the messages; -1: a dummy
  int parent = -1;
  bool deleted = false;
  std::vector<int> children;
};

class Threader {
 public:
  explicit Threader(const std::vector<ThreadMessage>& m) : m_(m) {
    for (const ThreadMessage& x : m_) subjects_.push_back(ExtractBaseSubject(x.subject));
  }

  std::string Run() {
    Link();
    std::vector<int> roots;
    for (size_t i = 0; i < n_.size(); ++i) {
      if (n_[i].parent == -1) roots.push_back(static_cast<int>(i));
    }
    roots = Prune(roots);
    SortSiblings(roots, /*top_only=*/true);
    roots = GatherBySubject(roots);
    SortSiblings(roots, /*top_only=*/false);
    return Format(roots);
  }

 private:
  struct Key {
    int64_t sent;
    uint32_t order;
    bool operator<(const Key& o) const { return sent != o.sent ? sent < o.sent : order < o.order; }
  };

  int NewNode() {
    n_.emplace_back();
    return static_cast<int>(n_.size()) - 1;
  }
  int ById(const std::string& id) {
    auto [it, added] = by_id_.emplace(id, 0);
    if (added) it->second = NewNode();
    return it->second;
  }
  // True when making `parent` the parent of `child` would close a loop.
  bool Loops(int parent, int child) const {
    // A node without children is nobody's ancestor: the common case (a new
    // reply under its parent) costs nothing, even in a 100,000-deep chain.
    if (parent == child) return true;
    if (n_[child].children.empty()) return false;
    for (int x = parent; x != -1; x = n_[x].parent) {
      if (x == child) return true;
    }
    return false;
  }
  void SetParent(int child, int parent) {
    if (int old = n_[child].parent; old != -1) {
      auto& c = n_[old].children;
      c.erase(std::find(c.begin(), c.end(), child));
    }
    n_[child].parent = parent;
    if (parent != -1) n_[parent].children.push_back(child);
  }

  // Step 1: containers by Message-ID, linked by References (In-Reply-To
  // when there are none).
  void Link() {
    for (size_t i = 0; i < m_.size(); ++i) {
      std::vector<std::string> own = MessageIds(m_[i].message_id);
      int node;
      if (own.empty() || n_[ById(own[0])].msg != -1) {
        node = NewNode();  // no id, or a duplicate: a unique one
      } else {
        node = ById(own[0]);
      }
      n_[node].msg = static_cast<int>(i);
      std::vector<std::string> refs = MessageIds(m_[i].references);
      if (refs.empty()) {
        std::vector<std::string> irt = MessageIds(m_[i].in_reply_to);
        if (!irt.empty()) refs.push_back(irt[0]);
      }
      if (!own.empty()) refs.erase(std::remove(refs.begin(), refs.end(), own[0]), refs.end());
      for (size_t r = 1; r < refs.size(); ++r) {
        int p = ById(refs[r - 1]), c = ById(refs[r]);
        if (n_[c].parent == -1 && !Loops(p, c)) SetParent(c, p);
      }
      int parent = refs.empty() ? -1 : ById(refs.back());
      if (parent != -1 && Loops(parent, node)) continue;
      SetParent(node, parent);
    }
  }

  // Nodes under `roots` children first (an explicit stack: chains are deep).
  std::vector<int> PostOrder(const std::vector<int>& roots) const {
    std::vector<int> out, stack(roots.rbegin(), roots.rend());
    while (!stack.empty()) {
      int x = stack.back();
      stack.pop_back();
      out.push_back(x);
      for (int c : n_[x].children) stack.push_back(c);
    }
    std::reverse(out.begin(), out.end());
    return out;
  }

  // Step 4: dummies without children go; a dummy's children take its place,
  // except a root dummy with several children (they would all be roots).
  std::vector<int> Prune(const std::vector<int>& roots) {
    for (int x : PostOrder(roots)) {
      std::vector<int> kept;
      for (int c : n_[x].children) {
        if (n_[c].msg != -1) {
          kept.push_back(c);
          continue;
        }
        for (int g : n_[c].children) {
          n_[g].parent = x;
          kept.push_back(g);
        }
        n_[c].children.clear();
        n_[c].deleted = true;
      }
      n_[x].children = std::move(kept);
    }
    std::vector<int> out;
    for (int r : roots) {
      Node& n = n_[r];
      if (n.msg == -1 && n.children.size() <= 1) {
        n.deleted = true;
        for (int g : n.children) {
          n_[g].parent = -1;
          out.push_back(g);
        }
        n.children.clear();
      } else {
        out.push_back(r);
      }
    }
    return out;
  }

  Key KeyOf(int x) const {
    while (n_[x].msg == -1 && !n_[x].children.empty()) x = n_[x].children.front();
    if (n_[x].msg == -1) return {0, 0};
    const ThreadMessage& m = m_[n_[x].msg];
    return {m.sent, m.order};
  }
  void SortList(std::vector<int>* v) const {
    std::stable_sort(v->begin(), v->end(), [this](int a, int b) { return KeyOf(a) < KeyOf(b); });
  }
  // Steps 5 and 7: siblings by sent date (a dummy by its first child).
  void SortSiblings(std::vector<int>& roots, bool top_only) {
    if (top_only) {
      for (int r : roots) {
        if (n_[r].msg == -1) SortList(&n_[r].children);
      }
    } else {
      for (int x : PostOrder(roots)) SortList(&n_[x].children);
    }
    SortList(&roots);
  }

  const BaseSubject* SubjectOf(int x) const {
    if (n_[x].msg == -1) {
      if (n_[x].children.empty() || n_[n_[x].children.front()].msg == -1) return nullptr;
      x = n_[x].children.front();
    }
    return &subjects_[n_[x].msg];
  }
  bool IsReply(int x) const { return n_[x].msg != -1 && subjects_[n_[x].msg].reply_or_fwd; }
  bool IsDummy(int x) const { return n_[x].msg == -1; }

  // Step 6: roots with the same base subject become one thread.
  std::vector<int> GatherBySubject(const std::vector<int>& roots) {
    std::unordered_map<std::string, int> table;
    for (int r : roots) {
      const BaseSubject* s = SubjectOf(r);
      if (s == nullptr || s->text.empty()) continue;
      auto [it, added] = table.emplace(s->text, r);
      if (added) continue;
      int t = it->second;
      if (!IsDummy(t) && (IsDummy(r) || (IsReply(t) && !IsReply(r)))) it->second = r;
    }
    std::vector<int> added_roots;
    for (int r : roots) {
      if (n_[r].deleted || n_[r].parent != -1) continue;
      const BaseSubject* s = SubjectOf(r);
      if (s == nullptr || s->text.empty()) continue;
      int& t = table[s->text];
      if (t == r) continue;
      if (IsDummy(t) && IsDummy(r)) {
        for (int c : n_[r].children) {
          n_[c].parent = t;
          n_[t].children.push_back(c);
        }
        n_[r].children.clear();
        n_[r].deleted = true;
      } else if (IsDummy(t)) {
        SetParent(r, t);
      } else if (IsDummy(r)) {
        SetParent(t, r);
        t = r;
      } else if (!IsReply(t) && IsReply(r)) {
        SetParent(r, t);
      } else {
        int d = NewNode();
        SetParent(t, d);
        SetParent(r, d);
        added_roots.push_back(d);
        t = d;
      }
    }
    std::vector<int> out;
    for (int r : roots) {
      if (!n_[r].deleted && n_[r].parent == -1) out.push_back(r);
    }
    for (int d : added_roots) {
      if (n_[d].parent == -1) out.push_back(d);
    }
    return out;
  }

  std::string Format(const std::vector<int>& roots) const {
    std::string out;
    // Work items: a node's body, or a literal "(" / ")".
    enum Kind { kBody, kOpen, kClose };
    std::vector<std::pair<Kind, int>> stack;
    for (auto it = roots.rbegin(); it != roots.rend(); ++it) {
      stack.push_back({kClose, 0});
      stack.push_back({kBody, *it});
      stack.push_back({kOpen, 0});
    }
    while (!stack.empty()) {
      auto [kind, x] = stack.back();
      stack.pop_back();
      if (kind == kOpen) {
        out.push_back('(');
        continue;
      }
      if (kind == kClose) {
        out.push_back(')');
        continue;
      }
      // A chain of single children prints flat: "a b c".
      bool first = true;
      for (;;) {
        if (!IsDummy(x)) {
          if (!first) out.push_back(' ');
          absl::StrAppend(&out, m_[n_[x].msg].id);
          first = false;
        }
        const std::vector<int>& c = n_[x].children;
        if (c.size() == 1 && !IsDummy(x)) {
          x = c.front();
          continue;
        }
        if (!c.empty() && !first) out.push_back(' ');
        for (auto it = c.rbegin(); it != c.rend(); ++it) {
          stack.push_back({kClose, 0});
          stack.push_back({kBody, *it});
          stack.push_back({kOpen, 0});
        }
        break;
      }
    }
    return out;
  }

  const std::vector<ThreadMessage>& m_;
  std::vector<BaseSubject> subjects_;
  std::vector<Node> n_;
  std::unordered_map<std::string, int> by_id_;
};

}  // namespace

std::string ThreadReferences(const std::vector<ThreadMessage>& messages) {
  return Threader(messages).Run();
}

std::string ThreadOrderedSubject(const std::vector<ThreadMessage>& messages) {
  std::vector<BaseSubject> subjects;
  std::vector<size_t> idx(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    subjects.push_back(ExtractBaseSubject(messages[i].subject));
    idx[i] = i;
  }
  auto by_date = [&](size_t a, size_t b) {
    return messages[a].sent != messages[b].sent ? messages[a].sent < messages[b].sent
                                                : messages[a].order < messages[b].order;
  };
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    if (subjects[a].text != subjects[b].text) return subjects[a].text < subjects[b].text;
    return by_date(a, b);
  });
  std::vector<std::vector<size_t>> threads;
  for (size_t i = 0; i < idx.size(); ++i) {
    if (i == 0 || subjects[idx[i]].text != subjects[idx[i - 1]].text) threads.emplace_back();
    threads.back().push_back(idx[i]);
  }
  std::sort(threads.begin(), threads.end(),
            [&](const auto& a, const auto& b) { return by_date(a.front(), b.front()); });
  std::string out;
  for (const auto& t : threads) {
    absl::StrAppend(&out, "(", messages[t[0]].id);
    if (t.size() == 2) absl::StrAppend(&out, " ", messages[t[1]].id);
    if (t.size() > 2) {
      out.push_back(' ');
      for (size_t i = 1; i < t.size(); ++i) absl::StrAppend(&out, "(", messages[t[i]].id, ")");
    }
    out.push_back(')');
  }
  return out;
}

}  // namespace mailgrid::access
