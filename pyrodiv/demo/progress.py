"""Progress of ``pyrodiv demo``: one bar over the whole run, each experiment weighted by its
measured cost, or plain log lines when the output is not a terminal.

The experiments advance the :class:`Tracker` they are given as ``progress`` (one unit per SVI
step, or per landscape); the tracker turns those units into the experiment's share of the
expected total time, so that the bar's estimate of the time left is the one the measured costs
give, not a count of experiments.

Example::

    >>> import io
    >>> out = io.StringIO()
    >>> tracker = Tracker({"a": 1.0, "b": 3.0}, stream=out, tty=False)
    >>> tracker.start("a", units=10); tracker.advance(10); tracker.finish("a", 0.5)
    >>> "[1/2] a: done" in out.getvalue()
    True
"""

from __future__ import annotations

import sys
import time


class Tracker:
    """One progress display over a sequence of experiments.

    :param weights: experiment name -> its expected cost (seconds of a reference run), in the
        order they run.
    :param stream: where to write (default ``sys.stdout``).
    :param tty: draw a live bar (``True``) or write plain lines (``False``); by default, a bar
        when ``stream`` is a terminal.
    :param enabled: ``False`` shows nothing.
    :param label: the bar's label and the prefix of each line.
    """

    def __init__(
        self,
        weights: dict,
        *,
        stream=None,
        tty: bool | None = None,
        enabled=True,
        label: str = "pyrodiv demo",
    ):
        self.weights = {k: max(float(v), 1e-3) for k, v in weights.items()}
        self.total = sum(self.weights.values())
        self.stream = sys.stdout if stream is None else stream
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.tty = bool(isatty()) if tty is None else tty
        self.enabled = enabled
        self.label = label
        self.done = 0.0  # weight completed by finished experiments
        self.name = None
        self.units = 1
        self.count = 0.0
        self.logged_quarter = 0
        self.index = 0
        self.t0 = time.perf_counter()
        self.bar = None
        if enabled and self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=round(self.total, 3),
                desc=label,
                file=self.stream,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, ~{remaining} "
                "left{postfix}",
                dynamic_ncols=True,
            )

    def _position(self) -> float:
        if self.name is None:
            return self.done
        share = min(1.0, self.count / self.units) if self.units else 1.0
        return self.done + share * self.weights.get(self.name, 0.0)

    def _show(self) -> None:
        if self.bar is not None:
            self.bar.n = round(min(self._position(), self.total), 3)
            self.bar.refresh()

    def start(self, name: str, units: float = 1) -> None:
        """Experiment ``name`` begins; it will report ``units`` units of progress."""
        self.name, self.units, self.count, self.logged_quarter = name, max(units, 1), 0.0, 0
        self.index += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(name, refresh=False)
            self._show()
        else:
            self._line(f"{name}: started")

    def advance(self, units: float = 1) -> None:
        """Report ``units`` more units of the current experiment."""
        self.count += units
        if not self.enabled:
            return
        if self.bar is not None:
            self._show()
            return
        quarter = int(4 * min(1.0, self.count / self.units))
        if 0 < quarter < 4 and quarter > self.logged_quarter:
            self.logged_quarter = quarter
            self._line(f"{self.name}: {25 * quarter}%")

    def finish(self, name: str, seconds: float) -> None:
        """Experiment ``name`` ended after ``seconds``."""
        self.done += self.weights.get(name, 0.0)
        self.name = None
        if not self.enabled:
            return
        if self.bar is not None:
            self._show()
        else:
            self._line(f"{name}: done in {seconds:.1f} s")

    def _line(self, text: str) -> None:
        elapsed = time.perf_counter() - self.t0
        position = self._position()
        left = ""
        if position > 0 and elapsed > 1:
            left = f", about {max(0.0, elapsed * (self.total / position - 1)):.0f} s left"
        self.stream.write(
            f"{self.label} [{self.index}/{len(self.weights)}] {text} "
            f"({100 * position / self.total:.0f}% of the work, {elapsed:.0f} s{left})\n"
        )
        self.stream.flush()

    def close(self) -> None:
        """Close the bar (if any)."""
        if self.bar is not None:
            self.bar.n = round(self.total, 3)
            self.bar.refresh()
            self.bar.close()
            self.bar = None
