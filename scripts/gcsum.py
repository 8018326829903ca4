#!/usr/bin/env python3
import re,sys
# gcsum.py LOG [WINDOW_S]: sums the GODEBUG=gctrace=1 lines of the last WINDOW_S (30)
# seconds of a log (an edge run by bench-fleet.sh with GODEBUG=gctrace=1 exported):
# GCs per second, mark wall and mark CPU per GC, live heap, share of wall time marking.
win=float(sys.argv[2]) if len(sys.argv)>2 else 30
rows=[]
for line in open(sys.argv[1]):
    m=re.match(r'gc \d+ @([\d.]+)s \d+%: ([\d.]+)\+([\d.]+)\+([\d.]+) ms clock, ([\d.]+)\+([\d.]+)/([\d.]+)/([\d.]+)\+([\d.]+) ms cpu, (\d+)->(\d+)->(\d+) MB', line)
    if m: rows.append([float(x) for x in m.groups()])
if not rows: print('no gctrace'); sys.exit()
end=rows[-1][0]; r=[x for x in rows if x[0]>end-win]
n=len(r); f=lambda i: sum(x[i] for x in r)/n
print('%d GCs in %.0fs (%.2f/s), mark wall %.1f ms, mark cpu assist %.1f + bg %.1f + idle %.1f ms, live %.1f MB, mark wall share %.1f%%' % (n, win, n/win, f(2), f(5), f(6), f(7), f(11), 100*sum(x[2] for x in r)/1000/win))
