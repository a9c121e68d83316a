// The messages the mailstored benchmarks store (mailstore_load and the
// offline mailstore_fill must produce the very same bytes).
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "mailgrid/mailstore/v1/mailbox.pb.h"

namespace mailgrid::bench {

inline const char* kWords[] = {"contract", "meeting", "report", "budget", "invoice", "schedule",
                        "project", "review", "deadline", "customer", "合同", "会议",
                        "quarterly", "shipment", "release", "design", "sprint", "payment"};

inline std::string Body(std::mt19937_64& rng, int size, const std::string& subject, const std::string& key) {
  std::string m = absl::StrCat("From: Load <load@example.com>\r\nTo: user@example.com\r\nSubject: ",
                               subject, "\r\nMessage-ID: <", key, "@load>\r\nX-Key: ", key,
                               "\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
                               "Content-Type: text/plain; charset=utf-8\r\n\r\n");
  size_t line = 0;
  while (static_cast<int>(m.size()) < size) {
    m += kWords[rng() % (sizeof kWords / sizeof *kWords)];
    m += (++line % 12 == 0) ? "\r\n" : " ";
  }
  m += "\r\n";
  return m;
}

// A realistic mix (sizes as enterprise mail, by message number n):
//  10/20: plain text, 1.5-4 KB;
//   5/20: multipart/alternative text + HTML of the same words, 8-20 KB;
//   3/20: text + a base64 attachment of 20-100 KB random (incompressible,
//         as PDFs and images are);
//   2/20: text + a base64 attachment of 150-600 KB random.
inline std::string MixBody(std::mt19937_64& rng, int n, const std::string& subject, const std::string& key) {
  auto words = [&](size_t bytes) {
    std::string t;
    size_t line = 0;
    while (t.size() < bytes) {
      t += kWords[rng() % (sizeof kWords / sizeof *kWords)];
      t += (++line % 12 == 0) ? "\r\n" : " ";
    }
    return t;
  };
  auto between = [&](size_t lo, size_t hi) { return lo + rng() % (hi - lo + 1); };
  std::string head = absl::StrCat("From: Load <load@example.com>\r\nTo: user@example.com\r\nSubject: ",
                                  subject, "\r\nMessage-ID: <", key, "@load>\r\nX-Key: ", key,
                                  "\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n");
  int kind = n % 20;
  if (kind < 10)
    return absl::StrCat(head, "Content-Type: text/plain; charset=utf-8\r\n\r\n", words(between(1500, 4000)), "\r\n");
  std::string b = absl::StrCat("b", key);
  if (kind < 15) {
    std::string text = words(between(2500, 6000));
    std::string html = "<html><body><p>";
    for (char c : text) html += c == '\n' ? std::string("</p>\r\n<p>") : std::string(1, c == '\r' ? ' ' : c);
    html += "</p></body></html>";
    return absl::StrCat(head, "Content-Type: multipart/alternative; boundary=\"", b, "\"\r\n\r\n--", b,
                        "\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", text, "\r\n--", b,
                        "\r\nContent-Type: text/html; charset=utf-8\r\n\r\n", html, "\r\n--", b, "--\r\n");
  }
  size_t attach = kind < 18 ? between(20000, 100000) : between(150000, 600000);
  std::string bin(attach, '\0');
  for (auto& c : bin) c = static_cast<char>(rng());
  static const char* kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string b64;
  for (size_t i = 0; i + 2 < bin.size(); i += 3) {
    uint32_t v = (uint8_t(bin[i]) << 16) | (uint8_t(bin[i + 1]) << 8) | uint8_t(bin[i + 2]);
    for (int k = 3; k >= 0; --k) b64 += kB64[(v >> (6 * k)) & 63];
    if ((i / 3 + 1) % 19 == 0) b64 += "\r\n";
  }
  return absl::StrCat(head, "Content-Type: multipart/mixed; boundary=\"", b, "\"\r\n\r\n--", b,
                      "\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", words(between(500, 2000)),
                      "\r\n--", b, "\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
                      "Content-Disposition: attachment; filename=\"doc", key, ".pdf\"\r\n\r\n", b64,
                      "\r\n--", b, "--\r\n");
}

// Message n of the large folder (mailstore_load --mode=large, and
// mailstore_fill writing the same deliveries offline): one recipient
// `mailbox`, subject "bulk <n> <word>" except "needle unicorn" at n ==
// total / 2, a Delivered-To line of writer w, \Seen on every third.
inline mailstore::v1::DeliverBatchRequest LargeDelivery(std::mt19937_64& rng, const std::string& prefix,
                                                        const std::string& mailbox, int n, int total,
                                                        int w, int size, bool mix) {
  std::string subject = n == total / 2
                            ? "needle unicorn"
                            : absl::StrCat("bulk ", n, " ", kWords[n % (sizeof kWords / sizeof *kWords)]);
  mailstore::v1::DeliverBatchRequest d;
  d.set_delivery_id(absl::StrCat(prefix, "-L", n));
  d.set_message(mix ? MixBody(rng, n, subject, absl::StrCat("L", n))
                    : Body(rng, size, subject, absl::StrCat("L", n)));
  auto* t = d.add_recipients();
  t->set_mailbox_id(mailbox);
  t->set_prepend_headers(absl::StrCat("Delivered-To: user", w, "@example.com\r\n"));
  if (n % 3 == 0) t->add_flags("\\Seen");
  return d;
}

}  // namespace mailgrid::bench
