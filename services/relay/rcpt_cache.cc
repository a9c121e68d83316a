#include "services/relay/rcpt_cache.h"

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "libs/rpc/errors.h"

namespace mailgrid::relay {

std::string RcptCache::Key(const tenant::v1::ResolveRequest& request) {
  // Deterministic serialization: equal requests give equal keys.
  std::string key;
  {
    google::protobuf::io::StringOutputStream out(&key);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    request.SerializeToCodedStream(&coded);
  }
  return key;
}

std::string RcptCache::DomainKey(std::string_view address) {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos || at + 1 == address.size()) return "";
  // A serialized ResolveRequest starts with a field tag (never NUL), so
  // the NUL prefix keeps domain keys apart from Key()'s.
  std::string key("\0domain:", 8);
  for (char c : address.substr(at + 1))
    key.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  return key;
}

bool RcptCache::NotHosted(const Answer& answer) {
  return !answer.ok() && answer.status().code() == absl::StatusCode::kNotFound &&
         rpc::ReasonOf(answer.status()) == "DOMAIN_NOT_HOSTED";
}

bool RcptCache::Cacheable(const Answer& answer) { return answer.ok() || NotHosted(answer); }

std::shared_ptr<const RcptCache::Answer> RcptCache::Get(const std::string& key, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  if (now >= it->second.expires) {
    entries_.erase(it);
    return nullptr;
  }
  return it->second.answer;
}

void RcptCache::Put(const std::string& key, const Answer& answer, absl::Time now) {
  if (ttl_ <= absl::ZeroDuration() || !Cacheable(answer)) return;
  Keep(key, answer, now + ttl_, now);
}

void RcptCache::PutDomain(const std::string& domain_key, const Answer& answer, absl::Time now) {
  if (foreign_ttl_ <= absl::ZeroDuration() || domain_key.empty() || !NotHosted(answer)) return;
  Keep(domain_key, answer, now + foreign_ttl_, now);
}

void RcptCache::Keep(const std::string& key, const Answer& answer, absl::Time expires,
                     absl::Time now) {
  auto kept = std::make_shared<const Answer>(answer);
  absl::MutexLock lock(&mu_);
  if (entries_.size() >= max_entries_) {
    // Drop what expired; if everything is fresh (a flood of distinct
    // recipients), start over rather than grow.
    for (auto it = entries_.begin(); it != entries_.end();) {
      it = now >= it->second.expires ? entries_.erase(it) : std::next(it);
    }
    if (entries_.size() >= max_entries_) entries_.clear();
  }
  entries_[key] = Entry{std::move(kept), expires};
}

size_t RcptCache::size() {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace mailgrid::relay
