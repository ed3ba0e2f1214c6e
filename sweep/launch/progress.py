"""The local launch's progress bar: a rich bar on stderr, tokens trained over tokens planned,
read from the store (the workers write their progress there)."""

from __future__ import annotations

from collections.abc import Sequence

from sweep.records import PlannedRun, RunState
from sweep.store import Store


class Progress:
    """``update(running)`` redraws from the store; ``close()`` draws the last state."""

    def __init__(self, store: Store, runs: Sequence[PlannedRun]):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)
        from rich.progress import Progress as Bar

        self.store, self.ids = store, {r.run_id for r in runs}
        self.total = sum(r.tokens for r in runs)
        self.p = Bar(TextColumn("[bold]{task.description}"), BarColumn(),
                     MofNCompleteColumn(), TextColumn("runs done"), TimeElapsedColumn(),
                     TimeRemainingColumn(),
                     console=Console(stderr=True), transient=False)
        self.task = self.p.add_task("training", total=len(runs))
        self.p.start()

    def update(self, running: list) -> None:
        rows = self.store.progress(self.ids)
        done = sum(1 for state, _ in rows if state in (RunState.COMPLETED, RunState.FAILED))
        tokens = sum(t for _, t in rows)
        self.p.update(self.task, completed=done,
                      description=f"training ({tokens / max(self.total, 1):.0%} tokens, "
                                  f"{len(running)} running)")

    def close(self) -> None:
        self.update([])
        self.p.stop()
