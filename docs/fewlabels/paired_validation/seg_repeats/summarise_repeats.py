"""Per-repeat Dice of the --seg-repeats 3 diagnostic, read from its logs (run from the repository root)."""
import ast, glob, re, statistics as st
runs = {}
for f in sorted(glob.glob('docs/fewlabels/paired_validation/seg_repeats/s*/log.txt')):
    for line in open(f):
        m = re.search(r"k=(\d+) seed=(\d+) (\w+)\s+dice=\S+ \(seg \d+ s\) (\{.*\})", line)
        if m:
            extra = ast.literal_eval(m.group(4))
            runs[(m.group(3), int(m.group(1)), int(m.group(2)))] = extra['repeat_dice']
for k in (5, 10):
    for s in (100, 101):
        c = runs.get(('classical', k, s))
        if not c: continue
        line = f"k={k} s{s} classical {' '.join(f'{v:.3f}' for v in c)} (range {100*(max(c)-min(c)):.1f})"
        for arm in ('selftrain', 'cond_pseudo'):
            a = runs.get((arm, k, s))
            if a:
                d = [100 * (x - y) for x, y in zip(a, c)]
                line += f" | {arm} - classical per repeat {' '.join(f'{v:+.1f}' for v in d)}, mean {st.mean(d):+.1f}"
        print(line)
