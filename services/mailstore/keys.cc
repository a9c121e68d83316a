#include "services/mailstore/keys.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace mailgrid::mailstore::keys {
namespace {
absl::string_view A(std::string_view v) { return absl::string_view(v.data(), v.size()); }
}  // namespace

bool ValidId(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  for (unsigned char c : id)
    if (c <= 0x20 || c == '/' || c >= 0x7f) return false;
  return true;
}

std::string MailboxIndex(std::string_view m) { return absl::StrCat("mbx/", A(m)); }
std::string JobIndex(std::string_view j) { return absl::StrCat("job/", A(j)); }
std::string Tenant(std::string_view t) { return absl::StrCat("t/", A(t), "/"); }
std::string TenantQuota(std::string_view t) { return absl::StrCat("t/", A(t), "/q"); }
std::string RetentionIndex(std::string_view t) { return absl::StrCat("ret/", A(t)); }
std::string TenantMailbox(std::string_view t, std::string_view m) {
  return absl::StrCat("t/", A(t), "/x/", A(m));
}
std::string TenantMailboxPrefix(std::string_view t) { return absl::StrCat("t/", A(t), "/x/"); }
std::string Retention(std::string_view t) { return absl::StrCat("t/", A(t), "/r"); }
std::string Body(std::string_view t, std::string_view sha) {
  return absl::StrCat("t/", A(t), "/b/", A(sha));
}
std::string BodyChunk(std::string_view t, std::string_view sha, uint32_t n) {
  std::string k = absl::StrCat("t/", A(t), "/b/", A(sha), "/c");
  AppendBe32(n, &k);
  return k;
}
std::string BodyTerms(std::string_view t, std::string_view sha) {
  return absl::StrCat("t/", A(t), "/b/", A(sha), "/terms");
}
std::string MailboxPrefixAll(std::string_view t) { return absl::StrCat("t/", A(t), "/m/"); }
std::string Mailbox(std::string_view t, std::string_view m) {
  return absl::StrCat("t/", A(t), "/m/", A(m));
}
std::string MailboxRange(std::string_view t, std::string_view m) {
  return absl::StrCat("t/", A(t), "/m/", A(m), "/");
}
std::string Folder(std::string_view t, std::string_view m, std::string_view f) {
  return absl::StrCat(MailboxRange(t, m), "f/", A(f));
}
std::string FolderPrefix(std::string_view t, std::string_view m) {
  return absl::StrCat(MailboxRange(t, m), "f/");
}
std::string MessagePrefix(std::string_view t, std::string_view m, std::string_view f) {
  return absl::StrCat(MailboxRange(t, m), "u/", A(f), "/");
}
std::string Message(std::string_view t, std::string_view m, std::string_view f, uint32_t uid) {
  std::string k = MessagePrefix(t, m, f);
  AppendBe32(uid, &k);
  return k;
}
std::string TombstonePrefix(std::string_view t, std::string_view m, std::string_view f) {
  return absl::StrCat(MailboxRange(t, m), "x/", A(f), "/");
}
std::string Tombstone(std::string_view t, std::string_view m, std::string_view f, uint32_t uid) {
  std::string k = TombstonePrefix(t, m, f);
  AppendBe32(uid, &k);
  return k;
}
std::string ModseqPrefix(std::string_view t, std::string_view m, std::string_view f) {
  return absl::StrCat(MailboxRange(t, m), "q/", A(f), "/");
}
std::string ModseqEntry(std::string_view t, std::string_view m, std::string_view f,
                        uint64_t modseq, uint32_t uid) {
  std::string k = ModseqPrefix(t, m, f);
  AppendBe64(modseq, &k);
  AppendBe32(uid, &k);
  return k;
}
std::string UnseenPrefix(std::string_view t, std::string_view m, std::string_view f) {
  return absl::StrCat(MailboxRange(t, m), "n/", A(f), "/");
}
std::string Unseen(std::string_view t, std::string_view m, std::string_view f, uint32_t uid) {
  std::string k = UnseenPrefix(t, m, f);
  AppendBe32(uid, &k);
  return k;
}
std::string PostingPrefix(std::string_view t, std::string_view m, std::string_view term) {
  std::string k = absl::StrCat(MailboxRange(t, m), "i/", A(term));
  k.push_back('\0');
  return k;
}
std::string Posting(std::string_view t, std::string_view m, std::string_view term,
                    std::string_view sha) {
  return absl::StrCat(PostingPrefix(t, m, term), A(sha));
}
std::string TermBlocksPrefix(std::string_view t, std::string_view m, std::string_view f) {
  return absl::StrCat(MailboxRange(t, m), "w/", A(f), "/");
}
std::string TermBlockPrefix(std::string_view t, std::string_view m, std::string_view f,
                            std::string_view term) {
  std::string k = absl::StrCat(TermBlocksPrefix(t, m, f), A(term));
  k.push_back('\0');
  return k;
}
std::string TermBlock(std::string_view t, std::string_view m, std::string_view f,
                      std::string_view term, uint32_t block) {
  std::string k = TermBlockPrefix(t, m, f, term);
  AppendBe32(block, &k);
  return k;
}
std::string IndexMark(std::string_view t, std::string_view m, std::string_view f) {
  return absl::StrCat(MailboxRange(t, m), "iw/", A(f));
}
std::string IndexQueue(std::string_view m) { return absl::StrCat("ixq/", A(m)); }
std::string IndexQueuePrefix() { return "ixq/"; }
std::string SearchLayout() { return "ms/layout"; }
std::string LayoutSupport(uint64_t member) { return absl::StrCat("ms/member/", member); }
std::string FolderPostingsPrefix(std::string_view t, std::string_view m, std::string_view f) {
  return absl::StrCat(MailboxRange(t, m), "p/", A(f), "/");
}
std::string FolderPostingPrefix(std::string_view t, std::string_view m, std::string_view f,
                                std::string_view term) {
  std::string k = absl::StrCat(FolderPostingsPrefix(t, m, f), A(term));
  k.push_back('\0');
  return k;
}
std::string FolderPosting(std::string_view t, std::string_view m, std::string_view f,
                          std::string_view term, uint32_t uid) {
  std::string k = FolderPostingPrefix(t, m, f, term);
  AppendBe32(uid, &k);
  return k;
}
std::string LocationPrefix(std::string_view t, std::string_view m, std::string_view sha) {
  return absl::StrCat(MailboxRange(t, m), "h/", A(sha), "/");
}
std::string LocationFolderPrefix(std::string_view t, std::string_view m, std::string_view sha,
                                 std::string_view f) {
  return absl::StrCat(LocationPrefix(t, m, sha), A(f), "/");
}
std::string Location(std::string_view t, std::string_view m, std::string_view sha,
                     std::string_view f, uint32_t uid) {
  std::string k = LocationFolderPrefix(t, m, sha, f);
  AppendBe32(uid, &k);
  return k;
}
std::string ChangePrefix(std::string_view t, std::string_view m) {
  return absl::StrCat(MailboxRange(t, m), "c/");
}
std::string Change(std::string_view t, std::string_view m, uint64_t modseq) {
  std::string k = ChangePrefix(t, m);
  AppendBe64(modseq, &k);
  return k;
}
std::string SubscriptionPrefix(std::string_view t, std::string_view m) {
  return absl::StrCat(MailboxRange(t, m), "s/");
}
std::string Subscription(std::string_view t, std::string_view m, std::string_view name) {
  return absl::StrCat(SubscriptionPrefix(t, m), A(name));
}
std::string Idem(std::string_view t, std::string_view m, std::string_view key) {
  return absl::StrCat(MailboxRange(t, m), "d/", A(key));
}
std::string AttrPrefix(std::string_view t, std::string_view m, std::string_view f) {
  return absl::StrCat(MailboxRange(t, m), "a/", A(f), "/");
}
std::string AttrValueBound(std::string_view t, std::string_view m, std::string_view f, char kind,
                           uint64_t ordered) {
  std::string k = AttrPrefix(t, m, f);
  k.push_back(kind);
  AppendBe64(ordered, &k);
  return k;
}
std::string AttrValue(std::string_view t, std::string_view m, std::string_view f, char kind,
                      uint64_t ordered, uint32_t uid) {
  std::string k = AttrValueBound(t, m, f, kind, ordered);
  AppendBe32(uid, &k);
  return k;
}
std::string AttrFlagPrefix(std::string_view t, std::string_view m, std::string_view f,
                           std::string_view flag) {
  std::string k = AttrPrefix(t, m, f);
  k.push_back('g');
  for (char c : flag) k.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  k.push_back('\0');
  return k;
}
std::string AttrFlag(std::string_view t, std::string_view m, std::string_view f,
                     std::string_view flag, uint32_t uid) {
  std::string k = AttrFlagPrefix(t, m, f, flag);
  AppendBe32(uid, &k);
  return k;
}
std::string UidMapPrefix(std::string_view t, std::string_view m, std::string_view f) {
  return absl::StrCat(MailboxRange(t, m), "k/", A(f), "/");
}
std::string UidMapBlock(std::string_view t, std::string_view m, std::string_view f,
                        uint32_t block) {
  std::string k = UidMapPrefix(t, m, f);
  AppendBe32(block, &k);
  return k;
}
std::string Job(std::string_view t, std::string_view m, std::string_view j) {
  return absl::StrCat(MailboxRange(t, m), "j/", A(j));
}

std::string FolderId(uint64_t n) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%08llx", static_cast<unsigned long long>(n));
  return buf;
}
void AppendBe32(uint32_t v, std::string* out) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void AppendBe64(uint64_t v, std::string* out) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t ReadBe32(std::string_view b) {
  if (b.size() < 4) return 0;
  uint32_t v = 0;
  for (size_t i = b.size() - 4; i < b.size(); ++i) v = (v << 8) | static_cast<unsigned char>(b[i]);
  return v;
}
uint64_t ReadBe64(std::string_view b) {
  if (b.size() < 8) return 0;
  uint64_t v = 0;
  for (size_t i = b.size() - 8; i < b.size(); ++i) v = (v << 8) | static_cast<unsigned char>(b[i]);
  return v;
}
std::string PrefixEnd(std::string p) {
  while (!p.empty()) {
    unsigned char c = static_cast<unsigned char>(p.back());
    if (c != 0xff) {
      p.back() = static_cast<char>(c + 1);
      return p;
    }
    p.pop_back();
  }
  return p;
}

}  // namespace mailgrid::mailstore::keys
