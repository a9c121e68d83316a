require ["subaddress", "envelope", "body", "copy", "reject"];
# comment
/* bracket
   comment */
if anyof (envelope :detail "to" "tag", address :user :matches "from" "al?ce*",
          header :matches :comparator "i;octet" "Subject" "*Caf\\*", body :contains "body",
          size :over 10K, exists ["List-Id", "From"], not true, allof(false, true)) {
  redirect :copy "archive@example.net";
} else {
  reject "go away";
}
