"""Paired differences between any two arms of a (merged) few-label run, per class, with the worst seed per class.

Usage: python paired_arms.py results.json cond_pseudo_cotrained-classical cond_pseudo_cotrained-selftrain ...
Each pair is compared on the seeds both arms ran (mean [95 % t interval], then per seed, Dice points).
"""
import json
import sys

from monai_gvae.benchmarks.fewlabels import worst_class_losses
from monai_gvae.benchmarks.stats import paired_difference

results = json.load(open(sys.argv[1]))
pairs = [tuple(p.split("-")) for p in sys.argv[2:]]
runs = results["runs"]
keys = ["dice"] + sorted({key for r in runs for key in r if key.startswith("dice_")})
for k in sorted({r["k"] for r in runs}):
    def by(arm, key):
        return {r["seed"]: r[key] for r in runs if r["arm"] == arm and r["k"] == k and r.get(key) == r.get(key)}
    for key in keys:
        for a, b in pairs:
            first, second = by(a, key), by(b, key)
            seeds = sorted(set(first) & set(second))
            if len(seeds) < 2:
                continue
            d = paired_difference(first, second)
            per = " ".join(f"{100 * (first[s] - second[s]):+.1f}" for s in seeds)
            print(f"k={k} {key:22s} {a} - {b}: {100 * d.mean:+.1f} [{100 * d.ci_low:+.1f}, {100 * d.ci_high:+.1f}] "
                  f"n={d.n} seeds {seeds[0]}-{seeds[-1]} | {per}")
    for arm in sorted({a for a, _ in pairs}):
        print(f"k={k} worst seed per class, {arm} - classical:",
              {c: (round(100 * v, 1), s) for c, (v, s) in worst_class_losses(runs, arm, k, keys[1:]).items()})
