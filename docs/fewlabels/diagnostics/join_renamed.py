"""Joins runs of an arm run with other settings (e.g. selftrain_atlas with --pseudo-keep 0.9) to the recorded runs of
the same seeds under a new arm name, into one results.json that paired_arms.py reads. Every non-classical arm of the
given runs is renamed NEW_ARM; their classical Dice are asserted equal to the recorded ones to the last digit (the same
cell). The recorded runs: RECORDED, by default docs/fewlabels/paired_validation/fused/results.json (classical,
self-training, the atlas and fused arms, seeds 100-109, paired validation). Run from the repository root:
python docs/fewlabels/diagnostics/join_renamed.py OUT.json NEW_ARM 'docs/fewlabels/paired_validation/atlas90/runs/s*/results.json' [RECORDED]"""
import glob
import json
import sys

out, new_arm, pattern = sys.argv[1:4]
recorded = json.load(open(sys.argv[4] if len(sys.argv) > 4 else "docs/fewlabels/paired_validation/fused/results.json"))
classical = {(r["seed"], r["k"]): r["dice"] for r in recorded["runs"] if r["arm"] == "classical"}
runs = list(recorded["runs"])
for path in sorted(glob.glob(pattern)):
    for r in json.load(open(path))["runs"]:
        if r["arm"] == "classical":
            assert r["dice"] == classical[(r["seed"], r["k"])], (path, r["seed"], r["k"])
        else:
            runs.append(dict(r, arm=new_arm))
json.dump({"runs": runs}, open(out, "w"), indent=1)
print(sorted({(r["arm"], r["k"], sum(x["arm"] == r["arm"] and x["k"] == r["k"] for x in runs)) for r in runs}))
