#!/usr/bin/env python3
"""Draws benches/ratios.svg: greenlet's time (or 1/throughput) as a multiple of tokio's, per
criterion benchmark, from the estimates `cargo bench` saved under target/criterion.

Run after `cargo bench`:  python3 benches/chart.py [target/criterion] [benches/ratios.svg]
Bars left of 1 mean greenlet is faster. Only the Python standard library is used.
"""
import json
import math
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "benches/ratios.svg")


def median_ns(bench_dir):
    est = bench_dir / "new" / "estimates.json"
    if not est.exists():
        return None
    return json.loads(est.read_text())["median"]["point_estimate"]


rows = []
for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "report"):
    green, tokio = group / "greenlet", group / "tokio"
    if not (green.is_dir() and tokio.is_dir()):
        continue
    sizes = [p.name for p in green.iterdir() if p.is_dir() and p.name != "report"]
    if (green / "new").exists():  # a group without sizes
        sizes = [""]
    for size in sorted(sizes, key=lambda s: (len(s), s)):
        g = median_ns(green / size if size else green)
        t = median_ns(tokio / size if size else tokio)
        if g and t:
            rows.append((f"{group.name}/{size}".rstrip("/"), g / t))

if not rows:
    sys.exit(f"no greenlet/tokio pairs under {root}: run `cargo bench` first")

width, bar_h, left, top = 760, 22, 230, 40
height = top + bar_h * len(rows) + 40
lo, hi = math.log10(0.05), math.log10(50)
scale = (width - left - 30) / (hi - lo)
x = lambda r: left + (math.log10(min(max(r, 0.05), 50)) - lo) * scale
svg = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
    f'<text x="{left}" y="20" font-size="14">greenlet time / tokio time (log scale; left of 1 = greenlet faster)</text>',
]
for tick in (0.1, 0.5, 1, 2, 5, 10, 30):
    svg.append(f'<line x1="{x(tick):.1f}" y1="{top - 5}" x2="{x(tick):.1f}" y2="{height - 30}" stroke="#ccc"/>')
    svg.append(f'<text x="{x(tick):.1f}" y="{height - 15}" text-anchor="middle">{tick}×</text>')
for i, (name, ratio) in enumerate(rows):
    y = top + i * bar_h
    x0, x1 = sorted((x(1), x(ratio)))
    color = "#2a9d4a" if ratio <= 1 else "#d1495b"
    svg.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{name}</text>')
    svg.append(f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 1):.1f}" height="{bar_h - 8}" fill="{color}"/>')
    svg.append(f'<text x="{x1 + 4:.1f}" y="{y + 15}">{ratio:.2f}×</text>')
svg.append(f'<line x1="{x(1):.1f}" y1="{top - 5}" x2="{x(1):.1f}" y2="{height - 30}" stroke="#333"/>')
svg.append("</svg>")
out.write_text("\n".join(svg) + "\n")
print(f"wrote {out} ({len(rows)} benchmarks)")
for name, ratio in rows:
    print(f"  {name:<32} {ratio:6.2f}×")
