"""The benchmark records committed under docs/ are what the closing notes and README quote: a record that holds a
Python traceback (a diagnostic run outside the environment) or a results file that does not parse is a lost figure."""
import json
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
TEXT_RECORDS = sorted(p for p in DOCS.rglob("*") if p.suffix in {".txt", ".log"})
RESULTS = sorted(DOCS.rglob("results.json"))


def test_records_exist():
    # guards the parametrised tests below against passing vacuously after a move of docs/
    assert len(TEXT_RECORDS) > 10 and len(RESULTS) > 10


@pytest.mark.parametrize("record", TEXT_RECORDS, ids=lambda p: str(p.relative_to(DOCS)))
def test_text_record_holds_no_traceback(record):
    text = record.read_text(errors="replace")
    assert "Traceback (most recent call last)" not in text, f"{record} records a crash, not figures"
    assert text.strip(), f"{record} is empty"


@pytest.mark.parametrize("results", RESULTS, ids=lambda p: str(p.relative_to(DOCS)))
def test_results_file_parses_and_holds_runs(results):
    data = json.loads(results.read_text())
    # the few-label benchmark writes "runs", the paper-table benchmark "results"
    runs = data if isinstance(data, list) else data.get("runs", data.get("results"))
    assert runs, f"{results} holds no runs"
