"""The metrics log of a run: one JSON object per line (step, epoch, losses, lr, img/s, time, memory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ganji.atomic import write_text_atomic


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every complete record; a line cut short by a crash is skipped."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text("utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
        return records

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resumed run repeats those steps and logs them again)."""
        # A hand-edited record whose step is not a whole number cannot be placed: drop it.
        records = [r for r in self.read() if isinstance(r.get("step", 0), int) and r.get("step", 0) <= step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in records))
