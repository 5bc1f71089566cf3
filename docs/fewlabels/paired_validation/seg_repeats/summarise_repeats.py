"""Per-repeat Dice of a --seg-repeats 3 diagnostic, read from its logs (run from the repository root).

Usage: python summarise_repeats.py [FOLDER holding s*/log.txt; default: this folder's records (constant lr)]
The last line gives the quantities of stop 46's rule: classical's within-seed range averaged over the (k, seed) cells,
and classical's mean Dice over every repeat.
"""
import ast, glob, re, statistics as st, sys

from scipy.stats import t
folder = sys.argv[1] if len(sys.argv) > 1 else 'docs/fewlabels/paired_validation/seg_repeats'
runs = {}
for f in sorted(glob.glob(f'{folder}/s*/log.txt')):
    for line in open(f):
        m = re.search(r"k=(\d+) seed=(\d+) (\w+)\s+dice=\S+ \(seg \d+ s\) (\{.*\})", line)
        if m:
            extra = ast.literal_eval(m.group(4))
            runs[(m.group(3), int(m.group(1)), int(m.group(2)))] = extra['repeat_dice']
ranges, classical_all = [], []
seeds = sorted({seed for _, _, seed in runs})
diffs = {}  # (arm, k): per-seed repeat-mean differences to classical, points
for k in (5, 10):
    for s in seeds:
        c = runs.get(('classical', k, s))
        if not c: continue
        ranges.append(100 * (max(c) - min(c)))
        classical_all += c
        line = f"k={k} s{s} classical {' '.join(f'{v:.3f}' for v in c)} (range {100*(max(c)-min(c)):.1f})"
        for arm in ('selftrain', 'cond_pseudo'):
            a = runs.get((arm, k, s))
            if a:
                d = [100 * (x - y) for x, y in zip(a, c)]
                line += f" | {arm} - classical per repeat {' '.join(f'{v:+.1f}' for v in d)}, mean {st.mean(d):+.1f}"
                diffs.setdefault((arm, k), []).append(st.mean(d))
        print(line)
for (arm, k), d in sorted(diffs.items(), key=lambda item: (item[0][1], item[0][0])):
    if len(d) > 1:  # mean over seeds of the repeat means, with a 95 % t-interval
        half = st.stdev(d) / len(d) ** 0.5 * t.ppf(0.975, len(d) - 1)
        print(f"k={k} {arm} - classical over {len(d)} seeds: {st.mean(d):+.1f} [{st.mean(d) - half:+.1f}, "
              f"{st.mean(d) + half:+.1f}]")
if ranges:
    print(f"classical: within-seed range {st.mean(ranges):.1f} points on average over {len(ranges)} cells; "
          f"mean Dice {st.mean(classical_all):.4f} over {len(classical_all)} repeats")
