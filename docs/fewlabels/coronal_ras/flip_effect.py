"""The flip fix's effect per arm: this run (slices in the radiological view) minus stop 40's (the same slices, seeds,
k slices and initial weights, with the upside-down flip), paired by seed, Dice points.

Usage: python flip_effect.py NEW/results.json OLD/results.json
"""
import json
import sys

from monai_gvae.benchmarks.stats import paired_difference

new, old = (json.load(open(p))["runs"] for p in sys.argv[1:3])
for k in sorted({r["k"] for r in new}):
    for arm in dict.fromkeys(r["arm"] for r in new):
        for key in ("dice", "dice_class_1", "dice_class_2", "dice_class_3"):
            a = {r["seed"]: r[key] for r in new if r["arm"] == arm and r["k"] == k}
            b = {r["seed"]: r[key] for r in old if r["arm"] == arm and r["k"] == k}
            seeds = sorted(set(a) & set(b))
            d = paired_difference({s: a[s] for s in seeds}, {s: b[s] for s in seeds})
            per = " ".join(f"{100 * (a[s] - b[s]):+.1f}" for s in seeds)
            print(f"k={k} {arm:16s} {key:13s} fixed - flipped: {100 * d.mean:+.1f} [{100 * d.ci_low:+.1f}, "
                  f"{100 * d.ci_high:+.1f}] | {per}")
