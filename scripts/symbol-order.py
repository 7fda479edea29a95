"""The functions of weft's executable that ran, from callgrind profiles, in link order.

Usage: symbol-order.py OUTPUT BINARY PROFILE...  (callgrind outputs made with --demangle=no)
       symbol-order.py --check BINARY ORDER  (how many of ORDER's symbols BINARY defines)

Writes OUTPUT, lld's symbol ordering file (one mangled name per line, '#' lines are comments):
the functions that ran in more profiles first, then those that ran more instructions, so the
code every node runs is packed at the front of .text and the hottest together. Only the
executable's own functions count, not those of the C library or the loader.
"""

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
        out.write("# weft's functions that ran in a profiled mesh, hot ones first")
        out.write(" (scripts/symbol-order.sh)\n")
        for name in names:
            out.write(name + "\n")
    print(f"{len(names)} functions from {len(profiles)} profiles")


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
    elif len(sys.argv) >= 4:
        order(sys.argv[1], sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
