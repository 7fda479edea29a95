"""The functions of weft's executable that ran, from callgrind profiles and native page
faults, in link order.

Usage: symbol-order.py OUTPUT BINARY PROFILE...  (callgrind outputs made with --demangle=no)
       symbol-order.py --faults ORDER BINARY FAULTS PIDS  (adds what faulted natively)
       symbol-order.py --check BINARY ORDER  (how many of ORDER's symbols BINARY defines)

Writes OUTPUT, lld's symbol ordering file (one mangled name per line, '#' lines are comments):
the functions that ran in more profiles first, then those that ran more instructions, so the
code every node runs is packed at the front of .text and the hottest together. Only the
executable's own functions count, not those of the C library or the loader.

--faults appends to ORDER the functions of BINARY whose code page-faulted in the processes
listed in the file PIDS (one per line: the nodes, not the CLI calls beside them) and that ORDER
does not list yet, those faulted in more processes first. FAULTS is `perf script --no-demangle -F
pid,addr --show-mmap-events` of `perf record -e minor-faults -c 1 -d`. Under valgrind the CPU
lacks AVX-512 and more, so code chosen by the CPU's features (AES-GCM and hashes in their fastest
forms) never runs in a callgrind profile; and BINARY, linked with ORDER, faults beyond the
ordered code only where a function ran that no profile saw. Only the first function touched in
each block the kernel maps at once faults, so a build and a run again may find more.
"""

import bisect
import collections
import os
import re
import subprocess
import sys

# ob=, cob=, fn= and cfn= lines: a name is given in full once, "(id) name", then as "(id)".
NAMED = re.compile(r"^(c?)(ob|fn)=\((\d+)\)(?: (.*))?$")
# callgrind names a function met again in another context name'2, name'3...
CONTEXT = re.compile(r"'\d+$")


def functions(path, binary):
    """BINARY's functions in one profile, each with the instructions it ran itself."""
    known = {"ob": {}, "fn": {}}
    ran = collections.Counter()
    ob = cob = current = None
    skip = False
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if skip:  # the cost line after calls= is the call's, counted where it was spent
            skip = False
            continue
        m = NAMED.match(line)
        if m:
            called, kind, key, given = m.groups()
            if given:
                known[kind][key] = given
            name = known[kind].get(key)
            if kind == "ob":
                if called:
                    cob = name
                else:
                    ob = name
                continue
            # A called function's object is the caller's unless a cob= line named another.
            obj = cob or ob if called else ob
            cob = None
            # Code with no symbol shows as an address or "(below main)": no name to order.
            named = bool(name) and not name.startswith(("0x", "("))
            ours = named and bool(obj) and os.path.realpath(obj) == binary
            if ours:
                ran[CONTEXT.sub("", name)] += 0
            if not called:
                current = CONTEXT.sub("", name) if ours else None
            continue
        if line.startswith("positions:") and line.split()[1:] != ["line"]:
            sys.exit(f"{path}: positions {line.split()[1:]}, not by line (--dump-instr=no)")
        if line.startswith("calls="):
            skip = True
            continue
        if current and line[:1] in "0123456789+-*":
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                ran[current] += int(fields[1])
    return ran


def order(output, binary, profiles):
    binary = os.path.realpath(binary)
    profiles_with, cost = collections.Counter(), collections.Counter()
    for path in profiles:
        for name, instructions in functions(path, binary).items():
            profiles_with[name] += 1
            cost[name] += instructions
    names = sorted(profiles_with, key=lambda n: (-profiles_with[n], -cost[n], n))
    with open(output, "w") as out:
        out.write("# weft's functions that ran in profiled meshes, hot ones first")
        out.write(" (scripts/symbol-order.sh)\n")
        for name in names:
            out.write(name + "\n")
    print(f"{len(names)} functions from {len(profiles)} profiles")


# A text mapping of the binary, as perf shows it: pid, start, length, file offset, permissions.
MMAP = re.compile(
    r"^\s*(\d+)\s+PERF_RECORD_MMAP2 \S+ \[0x([0-9a-f]+)\(0x([0-9a-f]+)\) @ 0x([0-9a-f]+) "
    r".*\]: (\S+) (.*)$"
)


def text_symbols(binary):
    """BINARY's functions as (file offset, size, name), sorted by offset."""
    sections = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True)
    text = re.search(r"\s\.text\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)", sections.stdout)
    if not text:
        sys.exit(f"readelf {binary}: no .text section")
    to_offset = int(text[2], 16) - int(text[1], 16)
    symbols = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True)
    found = []
    for line in symbols.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[2] in "tTW":
            found.append((int(fields[0], 16) + to_offset, int(fields[1], 16), fields[3]))
    if not found:
        sys.exit(f"nm {binary}: no functions (a stripped binary has no names)")
    return sorted(found)


def faults(order_file, binary, perf_script, pids_file):
    binary = os.path.realpath(binary)
    nodes = {int(l) for l in open(pids_file) if l.strip().isdigit()}
    symbols = text_symbols(binary)
    starts = [offset for offset, _, _ in symbols]
    listed = {l.strip() for l in open(order_file) if l.strip() and not l.startswith("#")}
    mapped, processes = {}, collections.defaultdict(set)
    for line in open(perf_script, errors="replace"):
        m = MMAP.match(line)
        if m:
            if m[5] == "r-xp" and m[6].strip() == binary and int(m[1]) in nodes:
                mapped[int(m[1])] = (int(m[2], 16), int(m[3], 16), int(m[4], 16))
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit() or int(fields[0]) not in mapped:
            continue
        start, length, offset = mapped[int(fields[0])]
        address = int(fields[1], 16)
        if not start <= address < start + length:
            continue
        at = address - start + offset
        k = bisect.bisect_right(starts, at) - 1
        if k >= 0 and at < symbols[k][0] + max(symbols[k][1], 1):
            processes[symbols[k][2]].add(int(fields[0]))
    if not processes:
        sys.exit(f"{perf_script}: no fault in the code of {binary} by the processes of {pids_file}")
    new = [n for n in processes if n not in listed]
    new.sort(key=lambda n: (-len(processes[n]), n))
    with open(order_file, "a") as out:
        out.write("# functions that faulted in processes running natively (--faults)\n")
        for name in new:
            out.write(name + "\n")
    print(f"{len(processes)} functions faulted in {len(mapped)} processes, {len(new)} added")


def check(binary, order_file):
    listed = {l.strip() for l in open(order_file) if l.strip() and not l.startswith("#")}
    symbols = subprocess.run(["nm", binary], capture_output=True, text=True)
    if symbols.returncode != 0:
        sys.exit(f"nm {binary}: {symbols.stderr.strip()} (a stripped binary has no names)")
    defined = {l.split()[-1] for l in symbols.stdout.splitlines() if len(l.split()) == 3}
    found = len(listed & defined)
    print(f"{found} of the {len(listed)} ordered functions are in {binary}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        check(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 6 and sys.argv[1] == "--faults":
        faults(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif len(sys.argv) >= 4:
        order(sys.argv[1], sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
