"""Joins the runs of the registered pool labels without the worst-fitting tenth (arm selftrain_atlas run with
--pseudo-keep 0.9, renamed atlas90 here) with the recorded atlas, fused and self-training runs of the same seeds,
into one results.json that paired_arms.py reads. Run from the repository root:
python docs/fewlabels/paired_validation/atlas90/combine.py /tmp/atlas90.json
Checks that every seed's classical Dice is the recorded one to the last digit."""
import glob
import json
import sys

recorded = json.load(open("docs/fewlabels/paired_validation/fused/results.json"))
classical = {(r["seed"], r["k"]): r["dice"] for r in recorded["runs"] if r["arm"] == "classical"}
runs = list(recorded["runs"])
for path in sorted(glob.glob(sys.argv[2] if len(sys.argv) > 2 else "docs/fewlabels/paired_validation/atlas90/runs/s*/results.json")):
    for r in json.load(open(path))["runs"]:
        if r["arm"] == "classical":
            assert r["dice"] == classical[(r["seed"], r["k"])], (path, r["seed"], r["k"])
        else:
            runs.append(dict(r, arm="atlas90"))
json.dump({"runs": runs}, open(sys.argv[1], "w"), indent=1)
print(sorted({(r["arm"], r["k"], sum(x["arm"] == r["arm"] and x["k"] == r["k"] for x in runs)) for r in runs}))
