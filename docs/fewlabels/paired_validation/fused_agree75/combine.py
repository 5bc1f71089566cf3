"""Joins the slice-level guard's runs (arm selftrain_fused run with --atlas-weight 1 --pseudo-keep 0.75, renamed
agree75 here) with the recorded fused, atlas and self-training runs of the same seeds, into one results.json that
paired_arms.py reads. Run from the repository root:
python docs/fewlabels/paired_validation/fused_agree75/combine.py /tmp/agree.json
Checks that every seed's classical Dice is the recorded one to the last digit."""
import glob, json, sys
recorded = json.load(open("docs/fewlabels/paired_validation/fused/results.json"))
classical = {(r["seed"], r["k"]): r["dice"] for r in recorded["runs"] if r["arm"] == "classical"}
runs = [r for r in recorded["runs"] if r["arm"] != "classical"]
runs += [r for r in recorded["runs"] if r["arm"] == "classical"]
for path in sorted(glob.glob("docs/fewlabels/paired_validation/fused_agree75/runs/s*/results.json")):
    for r in json.load(open(path))["runs"]:
        if r["arm"] == "classical":
            assert r["dice"] == classical[(r["seed"], r["k"])], (path, r["seed"], r["k"])
        else:
            runs.append(dict(r, arm="agree75"))
json.dump({"runs": runs}, open(sys.argv[1], "w"), indent=1)
print(sorted({(r["arm"], r["k"], len([x for x in runs if x["arm"] == r["arm"] and x["k"] == r["k"]])) for r in runs}))
