"""Each step of the echoes pinged under load, from crossings.sh's four captures.

Arguments: A's and B's underlay addresses, then the captures of A's underlay, A's tunnel
device, B's underlay and B's tunnel device (tcpdump -tt text). Each echo is paired by its
sequence number on both tunnel devices; a sealed frame is matched as the first echo-sized
frame sent after the plain packet it carries appeared, or the last one received before the
plain packet appeared. Prints the medians, in µs, of A sealing the request, B opening it, B's
kernel answering, B sealing the reply and A opening it, or "-" when no echo was matched.
"""

import bisect
import statistics
import sys


def frames(path, addr):
    """Times of echo-sized frames sent by addr, and of those sent to it."""
    sent, received = [], []
    for line in open(path):
        if " > " not in line or "length" not in line:
            continue
        if not 100 <= int(line.rsplit("length", 1)[1]) <= 160:
            continue
        fields = line.split()
        (sent if fields[2].startswith(addr + ".") else received).append(float(fields[0]))
    return sent, received


def echoes(path, kind):
    """Sequence number -> time of each echo request or reply seen on a tunnel device."""
    return {
        int(line.split(" seq ")[1].split(",")[0]): float(line.split()[0])
        for line in open(path)
        if kind in line and " seq " in line
    }


def before(times, t):
    i = bisect.bisect_right(times, t)
    return times[i - 1] if i else None


def after(times, t):
    i = bisect.bisect_left(times, t)
    return times[i] if i < len(times) else None


def main():
    a_addr, b_addr, eth_a, tun_a, eth_b, tun_b = sys.argv[1:]
    a_out, a_in = frames(eth_a, a_addr)
    b_out, b_in = frames(eth_b, b_addr)
    a_req, a_rep = echoes(tun_a, "echo request"), echoes(tun_a, "echo reply")
    b_req, b_rep = echoes(tun_b, "echo request"), echoes(tun_b, "echo reply")
    steps = [[] for _ in range(5)]
    for seq in sorted(set(a_req) & set(a_rep) & set(b_req) & set(b_rep)):
        marks = [
            a_req[seq], after(a_out, a_req[seq]),
            before(b_in, b_req[seq]), b_req[seq],
            b_rep[seq], after(b_out, b_rep[seq]),
            before(a_in, a_rep[seq]), a_rep[seq],
        ]
        if None in marks:
            continue
        parts = [marks[1] - marks[0], marks[3] - marks[2], marks[4] - marks[3],
                 marks[5] - marks[4], marks[7] - marks[6]]
        if min(parts) < 0:
            continue
        for k, v in enumerate(parts):
            steps[k].append(v)
    if not steps[0]:
        print("-")
        return
    print(" / ".join(f"{statistics.median(v) * 1e6:.1f}" for v in steps) + f" ({len(steps[0])})")


main()
