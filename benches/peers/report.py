#!/usr/bin/env python3
"""Reads benches/peers/results/raw.txt (written by run.sh) and writes table.md (imrelay
beside Kamailio, with ratios) and ramp.svg (p99 latency against offered load, per
scenario). Standard library only."""
import re
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])
raw = (out / "raw.txt").read_text().splitlines()
fixed = {}  # (server, scenario) -> list of (cpu_us, p99_ms, p50_ms, failed)
ramps = {}  # (server, scenario) -> list of (rate, p99_ms, clean)
best = {}  # (server, scenario) -> highest clean rate
line_re = re.compile(
    r"^(\w+) (?:rate (\d+)/s: )?([\w-]+): (\d+) sent, (\d+) ok, (\d+) failed, (\d+) lost .*?"
    r"p50 ([\d.]+) p90 [\d.]+ p99 ([\d.]+)"
)
sipp = {}  # (server, mode) -> list of (cpu_us_per_call, ok, failed, retransmissions)
sipp_re = re.compile(
    r"^sipp (\w+) (\w+): (\d+) calls at (\d+)/s, (\d+) ok, (\d+) failed, (\d+) retransmissions"
    r".*\(([\d.]+) µs per call\)"
)
mibs = {}  # (server, scenario) -> list of MiB/s (fixed-rate runs)
for line in raw:
    m = sipp_re.match(line)
    if m:
        sipp.setdefault((m[1], m[2]), []).append((float(m[8]), int(m[5]), int(m[6]), int(m[7])))
        continue
    m = re.match(r"^(\w+) ([\w-]+): highest clean rate (\d+)/s", line)
    if m:
        best[(m[1], m[2])] = int(m[3])
        continue
    m = line_re.match(line)
    if not m:
        continue
    server, rate, scenario = m[1], m[2], m[3]
    failed, lost, p50, p99 = int(m[6]), int(m[7]), float(m[8]), float(m[9])
    if rate:
        behind = re.search(r"behind schedule at worst ([\d.]+) ms", line)
        clean = failed == 0 and lost == 0 and behind and float(behind[1]) < 10
        ramps.setdefault((server, scenario), []).append((int(rate), p99, bool(clean)))
        continue
    cpu = re.search(r"server CPU [\d.]+ s \(([\d.]+) µs per request\)", line)
    fixed.setdefault((server, scenario), []).append(
        (float(cpu[1]) if cpu else float("nan"), p99, p50, failed + lost)
    )
    mb = re.search(r"; ([\d.]+) MiB/s", line)
    if mb:
        mibs.setdefault((server, scenario), []).append(float(mb[1]))

scenarios = ["register", "message-online", "message-offline", "msrp-auth"]
rows = [
    "| workload (same offered load) | imrelay CPU µs/op | Kamailio CPU µs/op | CPU ratio | "
    "imrelay p99 ms | Kamailio p99 ms | p99 ratio | failed (i/K) | max clean rate i / K | rate ratio |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
for s in scenarios:
    i, k = fixed.get(("imrelay", s), []), fixed.get(("kamailio", s), [])
    if not i or not k:
        continue
    med = lambda xs, n: statistics.median(x[n] for x in xs)
    ci, ck, pi, pk = med(i, 0), med(k, 0), med(i, 1), med(k, 1)
    fi, fk = sum(x[3] for x in i), sum(x[3] for x in k)
    bi, bk = best.get(("imrelay", s)), best.get(("kamailio", s))
    rate = f"{bi} / {bk}" if bi and bk else "–"
    rr = f"{bi / bk:.2f}×" if bi and bk else "–"
    ratio = lambda a, b: f"{a / b:.2f}×" if b else "–"
    rows.append(
        f"| {s} | {ci:.1f} | {ck:.1f} | {ratio(ci, ck)} | {pi:.3f} | {pk:.3f} | {ratio(pi, pk)} "
        f"| {fi} / {fk} | {rate} | {rr} |"
    )
# MSRP: bytes relayed per CPU second, and imrelay's 64 KiB chunks (Kamailio relays none).
ki, kk = fixed.get(("imrelay", "msrp-auth")), fixed.get(("kamailio", "msrp-auth"))
big = fixed.get(("imrelay64k", "msrp-auth"))
bi, bk = best.get(("imrelay", "msrp-auth")), best.get(("kamailio", "msrp-auth"))
if ki and kk:
    per_kib = lambda xs, kib: statistics.median(x[0] for x in xs) / kib
    rows += ["", "| MSRP relay, CPU per KiB relayed | imrelay µs/KiB | Kamailio µs/KiB (8 KiB chunks) | bytes per CPU, imrelay / Kamailio |",
             "|---|---|---|---|"]
    rows.append(f"| 8 KiB chunks, same load | {per_kib(ki, 8):.2f} | {per_kib(kk, 8):.2f} | "
                f"{per_kib(kk, 8) / per_kib(ki, 8):.2f}× |")
    if big:
        rows.append(f"| imrelay 64 KiB chunks (Kamailio refuses them) | {per_kib(big, 64):.2f} | "
                    f"{per_kib(kk, 8):.2f} | {per_kib(kk, 8) / per_kib(big, 64):.2f}× |")
    if bi and bk:
        rows.append(f"| highest clean rate on one CPU, 8 KiB chunks | {bi * 8 / 1024:.0f} MiB/s | "
                    f"{bk * 8 / 1024:.0f} MiB/s | {bi / bk:.2f}× |")
if sipp:
    rows += ["", "| SIPp workload (calls) | offered | imrelay CPU µs/call | Kamailio CPU µs/call | CPU ratio | "
             "ok (i/K) | failed (i/K) | retransmissions (i/K) |", "|---|---|---|---|---|---|---|---|"]
    rates = {}
    for line in raw:
        m = sipp_re.match(line)
        if m:
            rates[m[2]] = m[4]
    for mode in ["register", "relay", "offline"]:
        i, k = sipp.get(("imrelay", mode)), sipp.get(("kamailio", mode))
        if not i or not k:
            continue
        ci, ck = statistics.median(x[0] for x in i), statistics.median(x[0] for x in k)
        tot = lambda xs, n: sum(x[n] for x in xs)
        rows.append(f"| {mode} | {rates[mode]}/s | {ci:.1f} | {ck:.1f} | {ci / ck:.2f}× | "
                    f"{tot(i, 1)} / {tot(k, 1)} | {tot(i, 2)} / {tot(k, 2)} | {tot(i, 3)} / {tot(k, 3)} |")
(out / "table.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))

# ramp.svg: one panel per scenario, p99 (ms, log scale) against offered rate.
import math

W, H, PAD = 900, 260, 50
panels = [s for s in scenarios if ("imrelay", s) in ramps or ("kamailio", s) in ramps]
svg = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H * max(len(panels), 1)}" '
    'font-family="sans-serif" font-size="12">'
]
colors = {"imrelay": "#1f77b4", "kamailio": "#d62728"}
for n, s in enumerate(panels):
    top = n * H
    pts = {srv: ramps.get((srv, s), []) for srv in colors}
    rates = [r for v in pts.values() for r, _, _ in v] or [1]
    lat = [max(p, 0.001) for v in pts.values() for _, p, _ in v] or [1]
    xmax = max(rates) * 1.05
    ylo, yhi = math.log10(min(lat)) - 0.2, math.log10(max(lat)) + 0.2
    x = lambda r: PAD + (W - 2 * PAD) * r / xmax
    y = lambda p: top + H - PAD + (-(H - 2 * PAD)) * (math.log10(max(p, 0.001)) - ylo) / (yhi - ylo)
    svg.append(f'<text x="{PAD}" y="{top + 20}" font-weight="bold">{s}: p99 latency (ms, log) '
               f'against offered load ({"chunks" if s.startswith("msrp") else "requests"}/s); filled = clean step</text>')
    svg.append(f'<line x1="{PAD}" y1="{top + H - PAD}" x2="{W - PAD}" y2="{top + H - PAD}" stroke="#000"/>')
    svg.append(f'<line x1="{PAD}" y1="{top + PAD}" x2="{PAD}" y2="{top + H - PAD}" stroke="#000"/>')
    for k in range(5):
        r = xmax * k / 4
        svg.append(f'<text x="{x(r):.0f}" y="{top + H - PAD + 15}" text-anchor="middle">{r:.0f}</text>')
    for e in range(math.floor(ylo), math.ceil(yhi) + 1):
        if ylo <= e <= yhi:
            svg.append(f'<text x="{PAD - 5}" y="{y(10 ** e):.0f}" text-anchor="end">{10 ** e:g}</text>')
    for srv, v in pts.items():
        if not v:
            continue
        line = " ".join(f"{x(r):.1f},{y(p):.1f}" for r, p, _ in v)
        svg.append(f'<polyline points="{line}" fill="none" stroke="{colors[srv]}" stroke-width="2"/>')
        for r, p, clean in v:
            fill = colors[srv] if clean else "white"
            svg.append(f'<circle cx="{x(r):.1f}" cy="{y(p):.1f}" r="4" fill="{fill}" stroke="{colors[srv]}"/>')
    for j, srv in enumerate(colors):
        svg.append(f'<text x="{W - PAD - 120}" y="{top + PAD + 15 * j}" fill="{colors[srv]}">{srv}</text>')
svg.append("</svg>")
(out / "ramp.svg").write_text("\n".join(svg) + "\n")
