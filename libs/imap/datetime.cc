#include "libs/imap/datetime.h"

#include <cstdio>

#include "libs/imap/chars.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {
namespace {

constexpr const char* kMonths[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                   "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr const char* kMonthNames[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

int DaysInMonth(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

// Exactly `n` digits at s[*pos].
bool Digits(std::string_view s, size_t* pos, size_t n, int* out) {
  if (s.size() - *pos < n) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[*pos + i]);
    if (!chars::IsDigit(c)) return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool Expect(std::string_view s, size_t* pos, char c) {
  if (*pos >= s.size() || s[*pos] != c) return false;
  ++*pos;
  return true;
}

// date-day "-" date-month "-" date-year, from s[*pos]; the day has 1 or 2
// digits (a leading space is consumed by the caller for date-day-fixed).
bool ParseDateAt(std::string_view s, size_t* pos, Date* d) {
  size_t digits = 0;
  while (*pos + digits < s.size() && digits < 3 &&
         chars::IsDigit(static_cast<unsigned char>(s[*pos + digits]))) {
    ++digits;
  }
  if (digits < 1 || digits > 2 || !Digits(s, pos, digits, &d->day)) return false;
  if (!Expect(s, pos, '-') || s.size() - *pos < 3) return false;
  d->month = 0;
  for (int m = 0; m < 12; ++m) {
    bool match = true;
    for (int k = 0; k < 3; ++k) match = match && chars::ToUpper(s[*pos + k]) == kMonths[m][k];
    if (match) d->month = m + 1;
  }
  if (d->month == 0) return false;
  *pos += 3;
  if (!Expect(s, pos, '-') || !Digits(s, pos, 4, &d->year)) return false;
  return d->day >= 1 && d->day <= DaysInMonth(d->year, d->month);
}

}  // namespace

absl::StatusOr<Date> ParseDate(std::string_view text) {
  Date d;
  size_t pos = 0;
  if (!ParseDateAt(text, &pos, &d) || pos != text.size()) return BadArgument("Invalid date");
  return d;
}

absl::StatusOr<DateTime> ParseDateTime(std::string_view text) {
  DateTime t;
  size_t pos = 0;
  if (!text.empty() && text[0] == ' ') ++pos;  // date-day-fixed = (SP DIGIT) / 2DIGIT
  int zh = 0, zm = 0;
  bool ok = ParseDateAt(text, &pos, &t.date) && Expect(text, &pos, ' ') &&
            Digits(text, &pos, 2, &t.hour) && Expect(text, &pos, ':') &&
            Digits(text, &pos, 2, &t.minute) && Expect(text, &pos, ':') &&
            Digits(text, &pos, 2, &t.second) && Expect(text, &pos, ' ') && pos < text.size();
  if (ok) {
    const char sign = text[pos++];
    ok = (sign == '+' || sign == '-') && Digits(text, &pos, 2, &zh) && Digits(text, &pos, 2, &zm) &&
         pos == text.size();
    t.zone_minutes = (sign == '-' ? -1 : 1) * (zh * 60 + zm);
  }
  // Seconds may be 60 (a leap second); zones stay within a day.
  ok = ok && t.hour <= 23 && t.minute <= 59 && t.second <= 60 && zh <= 23 && zm <= 59;
  if (!ok) return BadArgument("Invalid date-time");
  return t;
}

std::string FormatDate(const Date& d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d-%s-%04d", d.day, kMonthNames[(d.month + 11) % 12], d.year);
  return buf;
}

std::string FormatDateTime(const DateTime& t) {
  const int z = t.zone_minutes < 0 ? -t.zone_minutes : t.zone_minutes;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%2d-%s-%04d %02d:%02d:%02d %c%02d%02d", t.date.day,
                kMonthNames[(t.date.month + 11) % 12], t.date.year, t.hour, t.minute, t.second,
                t.zone_minutes < 0 ? '-' : '+', z / 60, z % 60);
  return buf;
}

}  // namespace mailgrid::imap
