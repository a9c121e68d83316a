#!/usr/bin/env python3
"""Writes the sample messages in this folder (run from anywhere).

The messages are real-looking mail written for these tests. Non-ASCII
header text is encoded here with Python's codecs (GB2312, GBK, UTF-8), so the
tests check our decoding against an independent encoder. Large and hostile
inputs (10,000 parts, 1000 levels, 1 MB header lines) are built by the tests
themselves rather than stored.

`--sizes` prints the body size and line count of each part of the messages
whose BODYSTRUCTURE the tests assert, computed from the pieces the messages
are made of (not by parsing them), which is where those numbers come from.
"""
import base64
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CRLF = "\r\n"


def crlf(text):
    return text.replace("\n", CRLF)


def b64_lines(data, width=76):
    enc = base64.b64encode(data).decode()
    return CRLF.join(enc[i:i + width] for i in range(0, len(enc), width))


def write(name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def encoded_word(text, charset):
    return "=?%s?B?%s?=" % (charset, base64.b64encode(text.encode(charset.lower())).decode())


SIZES = {}


def note(msg, part, body):
    SIZES.setdefault(msg, []).append((part, len(body.encode("utf-8")), body.count("\n")))


# RFC 3501 §8 sample: its ENVELOPE and BODY are quoted verbatim by the test.
def rfc3501_fetch():
    lines = ["IMAP WG minutes, item %02d" % n for n in range(1, 93)]
    # Lengthen lines one character at a time until the body is exactly 3028
    # octets in 92 lines, the sizes the RFC's sample shows.
    k = 0
    while len(CRLF.join(lines) + CRLF) < 3028:
        lines[k % 92] += "."
        k += 1
    body = CRLF.join(lines) + CRLF
    assert len(body) == 3028 and body.count("\n") == 92
    header = crlf(
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\n"
        "From: Terry Gray <gray@cac.washington.edu>\n"
        "Subject: IMAP4rev1 WG mtg summary and minutes\n"
        "To: imap@cac.washington.edu\n"
        "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\n"
        "Message-Id: <B27397-0100000@cac.washington.edu>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n"
        "\n")
    write("rfc3501_fetch.eml", header + body)


def alternative():
    plain = crlf("Hi Bob,\n\nThe caf=C3=A9 on the corner at 3pm?\n\n-- \nAlice\n")
    html = crlf("<html><head><style>p {color: red}</style></head><body>\n"
                "<p>Hi Bob,</p><p>The <b>caf&eacute;</b> on the corner at 3pm&#63;</p>\n"
                "<script>alert('x')</script><p>-- Alice &amp; co</p></body></html>\n")
    msg = crlf(
        "From: Alice Example <alice@example.com>\n"
        "To: Bob <bob@example.org>\n"
        "Subject: Coffee?\n"
        "Date: Fri, 21 Nov 1997 09:55:06 -0600\n"
        "Message-ID: <1234@local.machine.example>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/alternative; boundary=\"b1_alt\"\n"
        "\n"
        "--b1_alt\n"
        "Content-Type: text/plain; charset=UTF-8\n"
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n") + plain + crlf(
        "\n--b1_alt\n"
        "Content-Type: text/html; charset=UTF-8\n"
        "\n") + html + crlf("\n--b1_alt--\n")
    note("alternative", "1", plain)
    note("alternative", "2", html)
    write("alternative.eml", msg)


def mixed_attachments():
    plain = crlf("Hi team,\n\nplease find the contract attached. Caf=C3=A9 at 3pm.\n")
    html = crlf("<p>Hi team,</p><p>please find the <b>contract</b> attached.</p>\n")
    pdf = b64_lines(b"%PDF-1.4\n% fake contract for tests\n1 0 obj <<>> endobj\n%%EOF\n") + CRLF
    png = b64_lines(b"\x89PNG\r\n\x1a\n" + bytes(range(40))) + CRLF
    alt_body = crlf(
        "--alt-42\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n") + plain + crlf(
        "\n--alt-42\n"
        "Content-Type: text/html; charset=utf-8\n"
        "\n") + html + crlf("\n--alt-42--\n")
    msg = crlf(
        "From: \"Zhang, Wei\" <wei.zhang@example.cn>\n"
        "To: Project Team <team@example.com>\n"
        "Cc: " + encoded_word("李四", "UTF-8") + " <li.si@example.cn>\n"
        "Subject: Q3 contract and drawings\n"
        "Date: Tue, 02 Jul 2024 10:15:00 +0800\n"
        "Message-ID: <20240702101500.1234@example.cn>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"----=_Part_0_1234.5678\"\n"
        "\n"
        "This is a multi-part message in MIME format.\n"
        "\n"
        "------=_Part_0_1234.5678\n"
        "Content-Type: multipart/alternative; boundary=alt-42\n"
        "\n") + alt_body + crlf(
        "\n------=_Part_0_1234.5678\n"
        "Content-Type: application/pdf; name=\"contract.pdf\"\n"
        "Content-Transfer-Encoding: base64\n"
        "Content-Disposition: attachment; filename=\"contract.pdf\"\n"
        "\n") + pdf + crlf(
        "\n------=_Part_0_1234.5678\n"
        "Content-Type: image/png\n"
        "Content-Transfer-Encoding: base64\n"
        "Content-ID: <logo@example.cn>\n"
        "Content-Disposition: inline;\n"
        " filename*0*=UTF-8''%E5%85%AC%E5%8F%B8;\n"
        " filename*1*=%E6%A0%87%E5%BF%97.png\n"
        "\n") + png + crlf("\n------=_Part_0_1234.5678--\n")
    note("mixed_attachments", "1 (multipart body)", alt_body)
    note("mixed_attachments", "1.1", plain)
    note("mixed_attachments", "1.2", html)
    note("mixed_attachments", "2", pdf)
    note("mixed_attachments", "3", png)
    write("mixed_attachments.eml", msg)


def forward():
    inner_body = crlf("Can we move the review to Thursday?\n")
    inner = crlf(
        "From: Carol <carol@example.net>\n"
        "To: alice@example.com\n"
        "Subject: Review\n"
        "Date: Mon, 1 Jul 2024 08:00:00 +0000\n"
        "Message-ID: <review-1@example.net>\n"
        "\n") + inner_body
    cover = crlf("See below.\n")
    msg = crlf(
        "From: Alice <alice@example.com>\n"
        "To: Dave <dave@example.org>\n"
        "Subject: Fwd: Review\n"
        "Date: Mon, 1 Jul 2024 09:00:00 +0000\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"fwd\"\n"
        "\n"
        "--fwd\n"
        "Content-Type: text/plain\n"
        "\n") + cover + crlf(
        "\n--fwd\n"
        "Content-Type: message/rfc822\n"
        "Content-Disposition: inline\n"
        "\n") + inner + crlf("\n--fwd--\n")
    note("forward", "1", cover)
    note("forward", "2 (message/rfc822 body)", inner)
    note("forward", "2.1 (inner body)", inner_body)
    write("forward.eml", msg)


def chinese_subjects():
    body = "合同已签订，请查收。\n签订合同书的原件在财务部。\n"
    gb = crlf(
        "From: " + encoded_word("王五", "GB2312") + " <wang.wu@example.cn>\n"
        "To: zhao@example.cn\n"
        "Subject: " + encoded_word("合同签订通知", "GB2312") + "\n"
        "Date: Wed, 03 Jul 2024 14:00:00 +0800\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=GB2312\n"
        "Content-Transfer-Encoding: base64\n"
        "\n") + b64_lines(crlf(body).encode("gb2312")) + CRLF
    write("gb2312_subject.eml", gb)
    # 镕 is in GBK but not in GB2312, and its second byte is ASCII 'F'.
    gbk_subject = "朱镕基 讲话稿"
    gbk = crlf(
        "From: office@example.cn\n"
        "To: archive@example.cn\n"
        "Subject: " + encoded_word(gbk_subject, "GBK") + "\n"
        "Date: Thu, 04 Jul 2024 09:30:00 +0800\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=gbk\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n").encode() + crlf("镕钢厂的报告。\n").encode("gbk")
    write("gbk_subject.eml", gbk)
    # Labelled GB2312 but really GBK, as old clients do.
    mislabelled = crlf(
        "From: office@example.cn\n"
        "Subject: =?gb2312?B?%s?=\n"
        "\n"
        "body\n") % base64.b64encode(gbk_subject.encode("gbk")).decode()
    write("gbk_labelled_gb2312.eml", mislabelled)


def utf8_headers():
    # RFC 6532: raw UTF-8 in headers, no encoded-words.
    msg = crlf(
        "From: 张三 <张三@例子.中国>\n"
        "To: \"Müller, Jürgen\" <jürgen@example.de>, Ελένη <eleni@example.gr>\n"
        "Subject: 会议纪要 — Besprechung über Verträge\n"
        "Date: Fri, 05 Jul 2024 16:45:00 +0200\n"
        "Message-ID: <utf8-1@example.de>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        "Привет! 会议纪要见附件。\n")
    write("utf8_headers.eml", msg)


# The structure of the RFC 3501 §6.4.5 example, each leaf naming its part.
def rfc3501_sections():
    def leaf(ctype, name):
        return crlf("Content-Type: %s\n\n" % ctype) + "[%s]" % name + CRLF

    def multipart(boundary, parts, subtype="mixed"):
        out = ""
        for p in parts:
            out += "--" + boundary + CRLF + p + CRLF
        return out + "--" + boundary + "--" + CRLF

    def message(header_marker, body_parts, boundary):
        return crlf("Content-Type: message/rfc822\n\n"
                    "Subject: %s\n"
                    "Content-Type: multipart/mixed; boundary=%s\n\n") % (
                        header_marker, boundary) + multipart(boundary, body_parts)

    part3 = message("inner 3", [leaf("text/plain", "3.1"),
                                leaf("application/octet-stream", "3.2")], "b3")
    part42 = message("inner 4.2", [
        leaf("text/plain", "4.2.1"),
        crlf("Content-Type: multipart/alternative; boundary=b422\n\n") + multipart(
            "b422", [leaf("text/plain", "4.2.2.1"), leaf("text/richtext", "4.2.2.2")]),
    ], "b42")
    part4 = crlf("Content-Type: multipart/mixed; boundary=b4\n\n") + multipart(
        "b4", [leaf("image/gif", "4.1"), part42])
    body = multipart("b0", [leaf("text/plain", "1"), leaf("application/octet-stream", "2"),
                            part3, part4])
    msg = crlf("Subject: outer\n"
               "MIME-Version: 1.0\n"
               "Content-Type: multipart/mixed; boundary=b0\n\n") + body
    write("rfc3501_sections.eml", msg)


def malformed():
    # The final boundary of the inner multipart never comes; the outer one does.
    write("missing_final_boundary.eml", crlf(
        "From: a@example.com\n"
        "Subject: missing boundary\n"
        "Content-Type: multipart/mixed; boundary=outer\n"
        "\n"
        "--outer\n"
        "Content-Type: multipart/alternative; boundary=inner\n"
        "\n"
        "--inner\n"
        "Content-Type: text/plain\n"
        "\n"
        "first\n"
        "--inner\n"
        "Content-Type: text/html\n"
        "\n"
        "<p>second</p>\n"
        "--outer\n"
        "Content-Type: text/plain\n"
        "\n"
        "third\n"
        "--outer--\n"))
    # Cut in the middle of a base64 attachment, no closing delimiter at all.
    write("truncated.eml", crlf(
        "From: a@example.com\n"
        "Subject: truncated\n"
        "Content-Type: multipart/mixed; boundary=\"zz\"\n"
        "\n"
        "--zz\n"
        "Content-Type: text/plain\n"
        "\n"
        "hello\n"
        "--zz\n"
        "Content-Type: application/octet-stream\n"
        "Content-Transfer-Encoding: base64\n"
        "\n"
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\n"
        "ISIjJCUmJygpKiss") )


def main():
    rfc3501_fetch()
    alternative()
    mixed_attachments()
    forward()
    chinese_subjects()
    utf8_headers()
    rfc3501_sections()
    malformed()
    if "--sizes" in sys.argv:
        for msg, parts in SIZES.items():
            for part, size, lines in parts:
                print("%s %s: %d octets, %d lines" % (msg, part, size, lines))


if __name__ == "__main__":
    main()
