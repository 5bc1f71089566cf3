"""checked vs unchecked cond_pseudo on the merged validation run: paired differences, per class, worst seeds."""
import json, sys
from monai_gvae.benchmarks.stats import paired_difference
from monai_gvae.benchmarks.fewlabels import worst_class_losses
r = json.load(open(sys.argv[1]))
runs = r["runs"]
keys = ["dice", "dice_cortex", "dice_deep_grey_matter", "dice_cerebellum"]
for k in (5, 10):
    def by(arm, key):
        return {x["seed"]: x[key] for x in runs if x["arm"] == arm and x["k"] == k and x[key] == x[key]}
    for key in keys:
        for a, b in (("cond_pseudo_checked", "cond_pseudo"), ("cond_pseudo_checked", "classical"), ("cond_pseudo", "classical")):
            d = paired_difference(by(a, key), by(b, key))
            seeds = sorted(set(by(a, key)) & set(by(b, key)))
            per = " ".join(f"{100 * (by(a, key)[s] - by(b, key)[s]):+.1f}" for s in seeds)
            print(f"k={k} {key:22s} {a} - {b}: {100 * d.mean:+.1f} [{100 * d.ci_low:+.1f}, {100 * d.ci_high:+.1f}] n={d.n} | {per}")
    for arm in ("cond_pseudo", "cond_pseudo_checked"):
        print(f"k={k} worst seed per class, {arm} - classical:",
              {c: (round(100 * v, 1), s) for c, (v, s) in worst_class_losses(runs, arm, k, keys[1:]).items()})
    print(f"k={k} acceptance:", {x["seed"]: round(x["acceptance"], 3) for x in runs if x["arm"] == "cond_pseudo_checked" and x["k"] == k})
