"""What each scenario tried and found, printed at the end of the run as one report.

A scenario calls `Report.add(...)` with its figures; the conftest prints every section in
pytest's terminal summary and writes them as JSON (RELIABILITY_REPORT, when set).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

SECTIONS: list[Section] = []


@dataclass
class Section:
    title: str
    tried: str
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, **figures: Any) -> None:
        self.figures.update(figures)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def lines(self) -> list[str]:
        out = [f"## {self.title}", f"   tried: {self.tried}"]
        for name, value in self.figures.items():
            shown = f"{value:.1f}" if isinstance(value, float) else str(value)
            out.append(f"   {name:<34} {shown}")
        out.extend(f"   note: {text}" for text in self.notes)
        return out


def section(title: str, tried: str) -> Section:
    result = Section(title, tried)
    SECTIONS.append(result)
    return result


def render() -> list[str]:
    lines: list[str] = []
    for item in SECTIONS:
        lines.extend(item.lines())
        lines.append("")
    return lines


def write_json() -> None:
    path = os.environ.get("RELIABILITY_REPORT")
    if not path or not SECTIONS:
        return
    data = [{"title": s.title, "tried": s.tried, "figures": s.figures, "notes": s.notes} for s in SECTIONS]
    with open(path, "w") as out:
        json.dump(data, out, indent=2, default=str)
