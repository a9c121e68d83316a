require ["fileinto", "imap4flags"];
if address :is "from" "boss@example.com" {
  fileinto :flags "\\Flagged" "Boss";
} elsif header :contains "subject" ["sale", "offer"] {
  addflag "\\Seen";
  fileinto "Promotions";
  stop;
} else {
  keep;
}
