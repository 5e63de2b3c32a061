"""What a run prints while it works: a start-up summary, one line per finished epoch that stays on screen, and
warnings; on a terminal, also a progress bar inside each epoch.

The same lines go to a terminal and to a batch job's log file: off a terminal (or with --no-progress) there is no
bar, only the lines. --quiet prints nothing (errors still reach stderr through the CLI). Epochs are counted from 1
here as in every file a run writes.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Iterable, Iterator, Mapping, TextIO

# How the epoch line shows the numbers it knows; any other number a loop passes is shown as `name value`.
LABELS = {"arch_loss": "arch loss", "parameter_free_share": "parameter-free ops", "knn_top1": "kNN top-1",
          "op_margin_median": "op margin", "op_margin_min": "smallest", "edge_margin_min": "edge margin"}
PERCENT = ("knn_top1", "parameter_free_share")
SECONDARY = ("seconds", "images_per_s", "lr")  # shown at the end, in their own format
# shown together: "entropy normal 0.99 reduce 0.98" (normalised only); a benchmark's truth as one note (the loop's)
HIDDEN_PREFIXES = ("entropy_", "true_", "rank_", "top_pct_")


def _number(value: float) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}" if abs(value) < 10 else f"{value:.1f}"
    return f"{value:.2g}" if abs(value) < 1e-3 else f"{value:.3e}"  # 0.00031, 3.1e-05; 1.235e+05


def epoch_line(epoch: int, epochs: int, stats: Mapping[str, Any], parts: Iterable[str] = (),
               notes: Iterable[str] = ()) -> str:
    """`epoch 2/50  loss 5.4321 (nt_xent 5.4321)  ...  41.2 s  24.8 img/s`: the epoch's mean loss and its parts,
    every other number the loop passed (generic, so new statistics show without touching this), `notes` (e.g. how
    the genotype changed) and the time."""
    width = len(str(epochs))
    parts = [p for p in parts if p in stats]
    words = [f"epoch {epoch:>{width}}/{epochs}"]
    if "loss" in stats:
        loss = f"loss {stats['loss']:.4f}"
        shown = [p for p in parts if p != "loss"]
        if shown:
            loss += " (" + ", ".join(f"{p} {stats[p]:.4f}" for p in shown) + ")"
        words.append(loss)
    entropies = {k[len("entropy_"):-len("_norm")]: v for k, v in stats.items()
                 if k.startswith("entropy_") and k.endswith("_norm")}
    if entropies:
        words.append("alpha entropy " + " ".join(f"{kind} {v:.3f}" for kind, v in entropies.items()) + " of uniform")
    for key, value in stats.items():
        if key in ("loss", "epoch", *parts, *SECONDARY) or key.startswith(HIDDEN_PREFIXES):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = LABELS.get(key, key)
        words.append(f"{name} {100 * value:.1f}%" if key in PERCENT else f"{name} {_number(value)}")
    words += list(notes)
    if "seconds" in stats:
        words.append(f"{stats['seconds']:.1f} s")
    if "images_per_s" in stats:
        words.append(f"{stats['images_per_s']:.1f} img/s")
    return "  ".join(words)


def resume_words(start_epoch: int, epochs: int) -> str | None:
    """The start-up summary's `resume` row of a search or a retrain (None for a fresh run)."""
    if not start_epoch:
        return None
    if start_epoch >= epochs:
        return f"all {epochs} epochs were already finished: nothing to do"
    return f"from epoch {start_epoch + 1} ({start_epoch} of {epochs} finished)"


class Console:
    """Prints a run's summary, epoch lines and warnings; makes the per-epoch progress bar.

    progress: show a bar inside each epoch (only on a terminal); quiet: print nothing at all."""

    def __init__(self, progress: bool = True, quiet: bool = False, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stdout
        self.quiet = quiet
        self.bars = progress and not quiet and bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: Any = None

    def line(self, text: str) -> None:
        """A line that stays: above the bar while one is drawn (tqdm.write), else a plain print."""
        if self.quiet:
            return
        if self._bar is not None:
            from tqdm.auto import tqdm

            tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def summary(self, title: str, rows: Iterable[tuple[str, Any]], derived: Iterable[str] = ()) -> None:
        """`title` then `  key: value` rows (values None are left out) and one `derived:` line."""
        if self.quiet:
            return
        rows = [(k, v) for k, v in rows if v is not None and v != ""]
        width = max((len(k) for k, _ in rows), default=0)
        self.line(title)
        for key, value in rows:
            self.line(f"  {key + ':':<{width + 1}} {value}")
        derived = list(derived)
        if derived:
            self.line(f"  derived (flags you did not set): {', '.join(derived)}")

    def warn(self, text: str) -> None:
        if not self.quiet:
            print(f"ssnas: warning: {text}", file=sys.stderr if self.stream is sys.stdout else self.stream,
                  flush=True)

    def steps(self, steps: int, desc: str) -> Iterator[int]:
        """range(steps), with a bar (that vanishes when the epoch ends) on a terminal."""
        if not self.bars:
            yield from range(steps)
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(range(steps), desc=desc, leave=False, dynamic_ncols=True, file=self.stream)
        try:
            yield from self._bar
        finally:
            self._bar.close()
            self._bar = None

    def postfix(self, **values: Any) -> None:
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)
