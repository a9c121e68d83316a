require ["vacation", "envelope"];
if not envelope :is "from" "" {
  vacation :days 7 :subject "Out of office" :addresses ["bob@example.com"]
    :handle "ooo-2026" text:
I am away until Monday.
..dot-stuffed line
.
;
}
