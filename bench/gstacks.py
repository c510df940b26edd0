# gstacks.py: for every live goroutine of a Go process, its stack size and
# how much of it is in use while it is parked, grouped by the function it
# started in. Used in BENCHMARKS.md ("Where an idle HTTP/2 subscriber's
# memory goes"):
#
#   gdb -p <pid> -batch -ex 'source bench/gstacks.py'
#
# The process stops while gdb reads it (a second or two for 6,000
# goroutines). Needs a binary with DWARF (go build's default).
from collections import defaultdict

import gdb

allgs = gdb.parse_and_eval("'runtime.allgs'")
arr, n = allgs["array"], int(allgs["len"])
groups, syms = defaultdict(list), {}
for i in range(n):
    g = arr[i].dereference()
    if int(g["atomicstatus"]["value"]) in (0, 6):  # _Gidle, _Gdead
        continue
    hi = int(g["stack"]["hi"])
    size = hi - int(g["stack"]["lo"])
    used = hi - int(g["sched"]["sp"])
    pc = int(g["startpc"])
    if pc not in syms:
        syms[pc] = gdb.execute("info symbol 0x%x" % pc, to_string=True).split(" in section")[0].strip()
    groups[(syms[pc], size)].append(used)
for (fn, size), used in sorted(groups.items(), key=lambda x: -len(x[1])):
    used.sort()
    print("%6d goroutines  stack %6d B  in use while parked: min %d median %d max %d B  %s"
          % (len(used), size, used[0], used[len(used) // 2], used[-1], fn))
