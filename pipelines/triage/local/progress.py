"""How far a training has got, stage by stage, for whoever shows it (the CLI draws a bar).

Most of a training runs in the model thread (pipelines/model_thread.py), so an implementation is
called from that thread as well as from the event loop's: it must be thread-safe."""

from __future__ import annotations

from typing import Protocol

EMBEDDING = "embedding history"
EMBEDDING_CASES = "embedding unlabelled cases"
FITTING = "fitting the text model"
FINE_TUNING = "fine-tuning the encoder"
ENCODING = "encoding with the tuned encoder"
CALIBRATING = "calibrating"
PSEUDO_LABELLING = "labelling unlabelled cases"


class TrainingProgress(Protocol):
    def stage(self, name: str, total: int | None) -> None:
        """A stage starts, of `total` steps (None: unknown); the previous one, if any, is done."""
        ...

    def advance(self, n: int = 1) -> None:
        """`n` more steps of the current stage are done."""
        ...


class _Quiet:
    def stage(self, name: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


QUIET: TrainingProgress = _Quiet()
