// IMAP dates: date (SEARCH: "1-Feb-1994", optionally quoted) and date-time
// (APPEND, INTERNALDATE: "17-Jul-1996 02:44:25 -0700"), RFC 3501 §9.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailgrid::imap {

struct Date {
  int year = 0;   // 4 digits
  int month = 0;  // 1-12
  int day = 0;    // 1-31, valid for the month
  bool operator==(const Date&) const = default;
};

struct DateTime {
  Date date;
  int hour = 0, minute = 0, second = 0;
  int zone_minutes = 0;  // offset from UTC, e.g. -420 for -0700
  bool operator==(const DateTime&) const = default;
};

// date-text = date-day "-" date-month "-" date-year; month names are
// case-insensitive (ABNF strings are). Refuses impossible days (31-Apr).
absl::StatusOr<Date> ParseDate(std::string_view text);
// The inside of the quoted date-time. The day may be " 7", "07" or "7"
// (the last is not RFC syntax but common).
absl::StatusOr<DateTime> ParseDateTime(std::string_view text);

std::string FormatDate(const Date& d);          // "1-Feb-1994"
std::string FormatDateTime(const DateTime& t);  // " 7-Feb-1994 21:52:25 -0800"

}  // namespace mailgrid::imap
