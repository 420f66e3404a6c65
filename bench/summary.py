"""The table of a `scripts/bench` run, from the JSON lines its benchmarks appended to
$BENCH_REPORT (see bench/report.py): `python -m bench.summary REPORT.jsonl`."""

import json
import sys
from pathlib import Path
from typing import Any


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def table(entries: list[dict[str, Any]]) -> str:
    lines = [
        "| figure | value | baseline | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for entry in entries:
        if entry.get("kind") != "figure":
            continue
        baseline = entry.get("baseline")
        ratio = entry.get("ratio")
        row = "| {name} | {value}{unit} | {baseline} | {ratio} | {compare} {target} | {result} |"
        lines.append(
            row.format(
                name=entry["name"],
                value=_number(entry["value"]),
                unit=entry["unit"],
                baseline=""
                if baseline is None
                else _number(baseline) + (entry.get("baseline_unit") or entry["unit"]),
                ratio="" if ratio is None else _number(ratio),
                compare=entry["compare"],
                target=_number(entry["target"]),
                result=("pass" if entry["passed"] else "MISSED")
                + (" (guarantee)" if entry.get("guarantee") else ""),
            )
        )
    infos = [entry for entry in entries if entry.get("kind") == "info"]
    if infos:
        lines.append("")
        for entry in infos:
            values = ", ".join(
                f"{key}={_number(value)}"
                for key, value in entry.items()
                if key not in ("kind", "name")
            )
            lines.append(f"- {entry['name']}: {values}")
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1])
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(table(entries))


if __name__ == "__main__":
    main()
