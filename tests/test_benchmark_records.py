"""The benchmark records committed under docs/ are what the closing notes and README quote: a record that holds a
Python traceback (a diagnostic run outside the environment) or a results file that does not parse is a lost figure."""
import json
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_text_records_hold_figures_not_tracebacks():
    records = sorted(p for p in DOCS.rglob("*") if p.suffix in {".txt", ".log"})
    assert len(records) > 10  # the check below must not pass vacuously after a move of docs/
    crashed = [str(p.relative_to(DOCS)) for p in records
               if "Traceback (most recent call last)" in p.read_text(errors="replace")]
    empty = [str(p.relative_to(DOCS)) for p in records if not p.read_text(errors="replace").strip()]
    assert not crashed, f"records of a crash, not figures: {crashed}"
    assert not empty, f"empty records: {empty}"


def test_results_files_parse_and_hold_runs():
    results = sorted(DOCS.rglob("results.json"))
    assert len(results) > 10
    without_runs = []
    for path in results:
        data = json.loads(path.read_text())  # a file that does not parse fails here, named in the traceback
        # the few-label benchmark writes "runs", the paper-table benchmark "results"
        runs = data if isinstance(data, list) else data.get("runs", data.get("results"))
        if not runs:
            without_runs.append(str(path.relative_to(DOCS)))
    assert not without_runs, f"results files without runs: {without_runs}"
