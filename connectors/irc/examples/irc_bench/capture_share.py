#!/usr/bin/env python3
"""The gateway's share of a relayed IRC line, from a loopback capture of irc_bench.

    tcpdump -i lo -U -w run.pcap -s 2000 tcp &     # as root, loopback only
    target/release/examples/irc_bench target/release/patchbay 1000 100
    sleep 10; kill %1     # tcpdump lags behind under load: let it drain before it stops
    python3 connectors/irc/examples/irc_bench/capture_share.py run.pcap

Prints the time from the server's copy of a paced line leaving for the source account
(server -> pba) to the destination account's line leaving for the server (pbb -> server),
and the server's own hop in the direct phase (alice's line in, bob's copy out). The times are
the kernel's, taken as each packet crosses the loopback device: no timing inside the gateway
(its trace log costs a write per step) adds to them."""
import re
import struct
import sys


def packets(path):
    f = open(path, "rb"); gh = f.read(24)
    magic = struct.unpack("<I", gh[:4])[0]
    nano = magic == 0xa1b23c4d
    link = struct.unpack("<I", gh[20:24])[0]
    while True:
        h = f.read(16)
        if len(h) < 16: return
        sec, frac, incl, orig = struct.unpack("<IIII", h)
        data = f.read(incl)
        t = sec + frac / (1e9 if nano else 1e6)
        off = 14 if link == 1 else (16 if link == 113 else 0)
        ip = data[off:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6: continue
        ihl = (ip[0] & 15) * 4
        tcp = ip[ihl:]
        sport, dport = struct.unpack(">HH", tcp[:4])
        doff = (tcp[12] >> 4) * 4
        payload = tcp[doff:]
        if payload: yield t, sport, dport, payload
pkts = list(packets(sys.argv[1]))
# Which client port is which nick: the port that sent "NICK x".
nick_of = {}
for t, s, d, p in pkts:
    m = re.search(rb"NICK (\S+)", p)
    if m and s not in nick_of:
        nick_of[s] = m.group(1).decode()
port_of = {v: k for k, v in nick_of.items()}
def first_times(src_port=None, dst_port=None, pattern=rb"relay (\d+)"):
    out = {}
    for t, s, d, p in pkts:
        if src_port is not None and s != src_port: continue
        if dst_port is not None and d != dst_port: continue
        for m in re.finditer(pattern, p):
            out.setdefault(int(m.group(1)), t)
    return out
pba, pbb, alice, bob = (port_of.get(n) for n in ("pba", "pbb", "alice", "bob"))
into_gw = first_times(dst_port=pba)
out_of_gw = first_times(src_port=pbb)
share = sorted((out_of_gw[i] - into_gw[i]) * 1e3 for i in into_gw if i in out_of_gw)
sent = first_times(src_port=alice, pattern=rb"direct (\d+)")
got = first_times(dst_port=bob, pattern=rb"direct (\d+)")
hop = sorted((got[i] - sent[i]) * 1e3 for i in sent if i in got)
def q(v, p): return v[min(len(v) - 1, int(len(v) * p))]
print("gateway in -> out (server's copy to pba, pbb's line out): n=%d p50=%.3f ms p99=%.3f ms" % (len(share), q(share, .5), q(share, .99)))
print("server's own hop (alice's line in, bob's copy out):      n=%d p50=%.3f ms p99=%.3f ms" % (len(hop), q(hop, .5), q(hop, .99)))
