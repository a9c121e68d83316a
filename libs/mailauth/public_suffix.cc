// The Public Suffix List for DMARC's organizational domain (RFC 7489 §3.2).
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/base/strings.h"
#include "libs/mailauth/dmarc.h"

namespace mailgrid::mailauth {

PublicSuffixList PublicSuffixList::FromString(std::string_view text) {
  PublicSuffixList psl;
  for (absl::string_view line : absl::StrSplit(ToAbsl(text), '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "//")) continue;
    size_t space = line.find_first_of(" \t");
    if (space != absl::string_view::npos) line = line.substr(0, space);
    std::string rule = absl::AsciiStrToLower(line);
    if (rule[0] == '!') {
      psl.exceptions_.insert(rule.substr(1));
    } else if (absl::StartsWith(rule, "*.")) {
      psl.wildcards_.insert(rule.substr(2));
    } else {
      psl.rules_.insert(rule);
    }
  }
  return psl;
}

absl::StatusOr<PublicSuffixList> PublicSuffixList::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open the public suffix list " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  PublicSuffixList psl = FromString(ss.str());
  psl.from_file_ = true;
  return psl;
}

const PublicSuffixList& PublicSuffixList::Default() {
  static const PublicSuffixList* list = [] {
    auto loaded = Load(kDebianPath);
    if (loaded.ok() && loaded->size() > 0) return new PublicSuffixList(*std::move(loaded));
    // Without the list, the last label is the suffix, plus a few common
    // second-level registries; wrong for many ccTLDs (see README).
    return new PublicSuffixList(
        FromString("co.uk\norg.uk\nac.uk\ngov.uk\ncom.au\nnet.au\norg.au\nco.jp\nne.jp\nco.nz\n"
                   "com.br\nco.za\ncom.cn\ncom.mx\nco.in\n"));
  }();
  return *list;
}

std::string PublicSuffixList::OrganizationalDomain(std::string_view domain) const {
  std::string d = CanonicalDnsName(domain);
  std::vector<std::string> labels = absl::StrSplit(d, '.');
  size_t n = labels.size();
  if (n <= 1) return d;
  auto join_from = [&](size_t i) {
    return absl::StrJoin(labels.begin() + static_cast<long>(i), labels.end(), ".");
  };
  size_t ps_start = n - 1;  // the implicit "*" rule
  for (size_t i = 0; i < n; ++i) {
    std::string s = join_from(i);
    if (exceptions_.count(s)) {
      ps_start = i + 1;
      break;
    }
    if (rules_.count(s) || (i + 1 < n && wildcards_.count(join_from(i + 1)))) {
      ps_start = i;
      break;
    }
  }
  if (ps_start == 0) return d;
  return join_from(ps_start - 1);
}

}  // namespace mailgrid::mailauth
