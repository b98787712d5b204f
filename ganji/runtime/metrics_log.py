"""The metrics log of a run: one JSON object per line (step, epoch, losses, lr, img/s, time, memory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ganji.atomic import check_replaceable, file_kind, write_text_atomic


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._checked = False

    def append(self, record: dict[str, Any]) -> None:
        if not self._checked:  # never append to a FIFO (it would block) or a device
            check_replaceable(self.path)
            self._checked = True
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every complete record; a line cut short by a crash, or damaged (bytes that are not UTF-8,
        JSON nested past reason), is skipped. Anything but a regular file at the path reads as empty."""
        if file_kind(self.path) is not None or not self.path.is_file():
            return []
        records = []
        for raw in self.path.read_bytes().splitlines():
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                continue
            if isinstance(rec, dict):
                records.append(rec)
        return records

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resumed run repeats those steps and logs them again)."""
        # A hand-edited record whose step is not a whole number cannot be placed: drop it.
        records = [r for r in self.read() if isinstance(r.get("step", 0), int) and r.get("step", 0) <= step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in records))
