"""bench/report.py decides the benchmarks' exit codes: a missed target fails a full run, and a
smoke run (CI) fails only on a missed guarantee."""

import pytest

from bench.report import Figure, report
from bench.summary import table

SLOW = Figure("throughput", 0.4, "", 0.6, ">=", baseline=None)
LOST = Figure("lost", 1, "", 0, "<=", guarantee=True)
FINE = Figure("p99", 20, " ms", 50, "<=")


@pytest.mark.parametrize(
    ("smoke", "figures", "code"),
    [
        ("0", [FINE], 0),
        ("0", [FINE, SLOW], 1),
        ("1", [FINE, SLOW], 0),
        ("1", [FINE, LOST], 1),
        ("0", [LOST], 1),
    ],
)
def test_exit_code(
    monkeypatch: pytest.MonkeyPatch, smoke: str, figures: list[Figure], code: int
) -> None:
    monkeypatch.setenv("BENCH_SMOKE", smoke)
    monkeypatch.delenv("BENCH_REPORT", raising=False)
    assert report(figures) == code


def test_ratio_against_the_baseline_decides() -> None:
    figure = Figure("intake", 1300, " req/s", 0.6, ">=", baseline=5000)
    assert figure.ratio == pytest.approx(0.26)
    assert not figure.passed
    assert "ratio=0.26 target=>=0.6 result=FAIL" in figure.line()


def test_summary_table_marks_misses_and_guarantees() -> None:
    rows = table(
        [
            {
                "kind": "figure",
                "name": "a",
                "value": 1.0,
                "unit": "",
                "baseline": 2.0,
                "ratio": 0.5,
                "compare": ">=",
                "target": 0.6,
                "passed": False,
            },
            {
                "kind": "figure",
                "name": "lost",
                "value": 0,
                "unit": "",
                "baseline": None,
                "ratio": None,
                "compare": "<=",
                "target": 0,
                "passed": True,
                "guarantee": True,
            },
        ]
    )
    assert "| a | 1 | 2 | 0.5 | >= 0.6 | MISSED |" in rows
    assert "| lost | 0 |  |  | <= 0 | pass (guarantee) |" in rows
