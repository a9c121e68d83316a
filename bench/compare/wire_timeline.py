#!/usr/bin/python3
"""Per-message wire timeline of one-session inbound (issue 8): where the
time from the client's end of DATA to relayd's 250 goes, from a tcpdump of
loopback while ONE smtp-source session sends to a launcher cluster.

  tcpdump -i lo -s 0 -w /tmp/x.pcap tcp &   # full packets: the dot must be seen
  smtp-source -d -s 1 -l 5120 -m 300 -f a@example.org -t USER HOST:PORT
  bench/compare/wire_timeline.py /tmp/x.pcap CLUSTER_DATA_DIR

Ports come from the cluster's ports.json. Followers' HTTP/2 WINDOW_UPDATEs
(26-byte packets) count as "ack" here: read the raw packets when the step
matters (the 05:01 run of issue 8 found the real acks ~1 ms later).
Events per message (ms from the client's dot):
  send  relayd -> mailstored leader, first payload after the dot (DeliverBatch)
  ae    leader -> a follower, first payload after send (AppendEntries)
  ack   follower -> leader, first payload after ae
  resp  leader -> relayd, first payload after ack (the answer)
  250   relayd -> client, first payload after resp
"""
import json, os, statistics, struct, sys

if len(sys.argv) != 3:
    raise SystemExit(__doc__)
pcap, data = sys.argv[1], sys.argv[2]
ports = json.load(open(os.path.join(data, "ports.json")))["ports"]
smtp = int(ports["smtp"]) if "smtp" in ports else None
stores = {int(v): k for k, v in ports.items() if k.startswith("mailstored-") and k.endswith(".grpc")}

def packets():
    f = open(pcap, "rb")
    gh = f.read(24)
    magic = struct.unpack("<I", gh[:4])[0]
    nano = magic == 0xa1b23c4d
    link = struct.unpack("<I", gh[20:24])[0]
    while True:
        h = f.read(16)
        if len(h) < 16:
            return
        sec, frac, incl, _ = struct.unpack("<IIII", h)
        buf = f.read(incl)
        ts = sec + frac / (1e9 if nano else 1e6)
        off = 14 if link == 1 else (16 if link == 113 else 0)
        ip = buf[off:]
        if len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 15) * 4
        tot = struct.unpack(">H", ip[2:4])[0]
        tcp = ip[ihl:tot]
        sport, dport = struct.unpack(">HH", tcp[:4])
        doff = (tcp[12] >> 4) * 4
        payload = tcp[doff:]
        if payload:
            yield ts, sport, dport, payload

msgs = []
cur = None
for ts, sp, dp, pl in packets():
    if dp == smtp and pl.endswith(b"\r\n.\r\n"):
        cur = {"dot": ts}
        msgs.append(cur)
        continue
    if cur is None:
        continue
    if "send" not in cur:
        if dp in stores and sp not in stores:
            cur["send"] = ts
            cur["leader"] = dp
        continue
    L = cur["leader"]
    if "ae" not in cur:
        if sp == L or (dp in stores and dp != L):
            # leader -> follower: either the leader's own client port or to a follower's listen port
            if dp in stores and dp != L:
                cur["ae"] = ts
        continue
    if "ack" not in cur:
        if sp in stores and sp != L:
            cur["ack"] = ts
        continue
    if "resp" not in cur:
        if sp == L and dp not in stores:
            cur["resp"] = ts
        continue
    if "250" not in cur:
        if sp == smtp and pl.startswith(b"250"):
            cur["250"] = ts
            cur = None

full = [m for m in msgs if "250" in m]
print("messages with a full timeline: %d of %d" % (len(full), len(msgs)))
steps = [("dot->send", "dot", "send"), ("send->ae", "send", "ae"), ("ae->ack", "ae", "ack"),
         ("ack->resp", "ack", "resp"), ("resp->250", "resp", "250"), ("dot->250", "dot", "250")]
for name, a, b in steps:
    d = sorted((m[b] - m[a]) * 1000 for m in full)
    if d:
        print("%-10s p50 %.3f  mean %.3f  p90 %.3f ms" % (name, statistics.median(d), statistics.mean(d), d[int(len(d) * 0.9)]))
gaps = sorted((b["dot"] - a["250"]) * 1000 for a, b in zip(full, full[1:]) if "250" in a)
if gaps:
    print("250->next dot p50 %.3f ms (client side: MAIL/RCPT/DATA/content)" % statistics.median(gaps))
