"""One way to print a measured figure next to its baseline and target, and to fail on a miss.

Every target is a ratio measured in one run (figure / baseline), so machine noise cancels.
Each figure prints as one `BENCH name=… value=… baseline=… ratio=… target=… result=…` line
(`scripts/bench` collects them into the README table) and a benchmark's exit code is non-zero
when any of its figures missed its target.

Two kinds of figure: a performance target, and a guarantee (`guarantee=True`: nothing lost,
no non-2xx answer, ...). With `BENCH_SMOKE=1` (the short runs CI makes) only guarantees decide
the exit code: a few seconds of load on a shared machine prove that the benchmark works and
that nothing was lost, not how fast the service is; the full runs decide that.
"""

import json
import operator
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Comparison = Literal["<=", ">=", "<", ">"]
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}


@dataclass(frozen=True)
class Figure:
    """One measured figure; `ratio` is compared with `target` (or `value`, without a baseline)."""

    name: str
    value: float
    unit: str
    target: float
    compare: Comparison
    baseline: float | None = None
    baseline_unit: str | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    guarantee: bool = False

    @property
    def ratio(self) -> float | None:
        if self.baseline is None:
            return None
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def compared(self) -> float:
        ratio = self.ratio
        return self.value if ratio is None else ratio

    @property
    def passed(self) -> bool:
        return _COMPARE[self.compare](self.compared, self.target)

    def line(self) -> str:
        parts = [f"BENCH name={self.name}", f"value={_number(self.value)}{self.unit}"]
        if self.baseline is not None:
            parts.append(f"baseline={_number(self.baseline)}{self.baseline_unit or self.unit}")
            parts.append(f"ratio={_number(self.compared)}")
        parts.append(f"target={self.compare}{_number(self.target)}")
        parts.append(f"result={'PASS' if self.passed else 'FAIL'}")
        if self.guarantee:
            parts.append("kind=guarantee")
        parts.extend(f"{key}={_number(value)}" for key, value in self.extra.items())
        if self.note:
            parts.append(f"note={self.note!r}")
        return " ".join(parts)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def info(name: str, **values: Any) -> None:
    """A measured figure with no target (e.g. cost growth): printed, never failing."""
    parts = [f"INFO name={name}", *(f"{key}={_number(value)}" for key, value in values.items())]
    print(" ".join(parts), flush=True)
    _record({"kind": "info", "name": name, **values})


def report(figures: Iterable[Figure]) -> int:
    """Print every figure; the exit code for the script (1 when a target that counts was
    missed: any, or in a smoke run only a guarantee)."""
    smoke = os.environ.get("BENCH_SMOKE") == "1"
    missed = 0
    for figure in figures:
        print(figure.line(), flush=True)
        _record(
            {"kind": "figure", **asdict(figure), "ratio": figure.ratio, "passed": figure.passed}
        )
        if not figure.passed and (figure.guarantee or not smoke):
            missed += 1
    return 1 if missed else 0


def _record(entry: dict[str, Any]) -> None:
    """Append to $BENCH_REPORT as JSON lines, for the runner's summary table."""
    path = os.environ.get("BENCH_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry, default=str) + "\n")


def exit_with(figures: Iterable[Figure]) -> None:
    sys.exit(report(figures))
