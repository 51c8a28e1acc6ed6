"""Progress of long jobs: a bar on a terminal, a plain log line now and then anywhere else.

A rich progress bar written to a file (a SLURM job's log, CI, a pipe) shows nothing until the
phase ends. :class:`Progress` draws the bar only when its stream is a terminal; otherwise it
writes one line when it starts, one every ``every`` steps or ``every_seconds`` seconds
(whichever comes first, at most one per update), and one at the end with the total time::

    with Progress("train", total=1000, completed=start, fields=("loss",)) as bar:
        for step in range(start, 1000):
            ...
            bar.update(step + 1, loss=loss, samples_per_s=rate)

gives, in a log file::

    train: resuming at 200/1000 steps
    train: 380/1000 steps (38%), loss 0.1234, 245 samples/s, 6.01 steps/s, 0:00:30 elapsed, 0:01:43 left
    ...
    train: done, 1000/1000 steps in 0:02:13 (6.02 steps/s), loss 0.0812, 246 samples/s

Field values are given by name to :meth:`Progress.update` / :meth:`Progress.advance`. A name
ending in ``_per_s`` is a rate and reads ``12.3 samples/s``; any other reads ``loss 0.1234``.
The rate of the job itself (``steps/s``, or ``s/step`` when slower than one a second) and the
time left are measured over this run's updates only, so a job resumed at ``completed=k`` does
not count its ``k`` earlier steps as done in no time.

The environment variable ``TELLUS_PROGRESS`` overrides the choice: ``bar`` (draw the bar even
when the stream is not a terminal, e.g. in a notebook), ``plain`` (log lines even on a
terminal), ``off`` (nothing at all); ``auto`` or unset chooses by ``stream.isatty()``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal, TextIO, TypeVar

import rich.progress as rp
from rich.console import Console
from rich.table import Column
from rich.text import Text

ENV = "TELLUS_PROGRESS"
RATE_SUFFIX = "_per_s"

Mode = Literal["bar", "plain", "off"]
T = TypeVar("T")


def mode(stream: TextIO | None = None, *, enabled: bool = True) -> Mode:
    """How progress on ``stream`` (default ``sys.stderr``) is shown: bar, plain lines or off.

    Raises:
      ValueError: ``TELLUS_PROGRESS`` is set to something other than bar, plain, off or auto.
    """
    if not enabled:
        return "off"
    choice = os.environ.get(ENV, "").strip().lower()
    if choice in ("bar", "plain", "off"):
        return choice  # type: ignore[return-value]
    if choice not in ("", "auto"):
        raise ValueError(f"{ENV}={os.environ[ENV]!r}: choose bar, plain, off or auto")
    stream = sys.stderr if stream is None else stream
    try:
        return "bar" if stream.isatty() else "plain"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "plain"


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (hours unbounded), as rich shows elapsed and remaining time."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def format_number(x: float) -> str:
    """Three significant digits, whole numbers from 100 up: ``0.0123``, ``12.3``, ``4567``."""
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def format_field(name: str, value: Any) -> str:
    """``loss 0.1234``; a name ending in ``_per_s`` is a rate: ``12.3 samples/s``."""
    if name.endswith(RATE_SUFFIX):
        return f"{format_number(value)} {name[: -len(RATE_SUFFIX)]}/s"
    if isinstance(value, bool | int | str):
        return f"{name} {value}"
    try:
        return f"{name} {float(value):.4g}"
    except (TypeError, ValueError):
        return f"{name} {value}"


def format_rate(rate: float | None, unit: str) -> str:
    """``6.01 steps/s``, or ``32.1 s/step`` when slower than one a second."""
    if rate is None:
        return f"? {unit}s/s"
    if rate >= 1 or rate <= 0:
        return f"{format_number(rate)} {unit}s/s"
    return f"{format_number(1 / rate)} s/{unit}"


class Progress:
    """Progress of one phase of a job, shown as a bar on a terminal and as log lines elsewhere.

    Args:
      description: what runs, first on the bar and on each line (e.g. ``"spin-up"``).
      total: steps in the whole phase.
      completed: steps already done before this run (a resumed job).
      unit: what a step is (``"step"``, ``"chunk"``, ``"lead"``); lines say ``12/40 chunks``.
      fields: names of the fields the updates give, in the order they are shown (shown as
        ``-`` until given); fields given but not listed are shown after them.
      enabled: False shows nothing (as ``TELLUS_PROGRESS=off``).
      stream: where to write; default ``sys.stderr``. Its ``isatty()`` chooses bar or lines.
      every_seconds: a line at the first update at least this long after the last line;
        None for none by time.
      every: a line at the first update at least this many steps after the last line; None
        (the default) for none by count.
      clock: the time in seconds (monotonic); tests inject a fake one.
    """

    def __init__(
        self,
        description: str,
        total: int,
        *,
        completed: int = 0,
        unit: str = "step",
        fields: Sequence[str] = (),
        enabled: bool = True,
        stream: TextIO | None = None,
        every_seconds: float | None = 30.0,
        every: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if every is not None and every < 1:
            raise ValueError(f"every={every} must be at least 1 (or None)")
        self.description = description
        self.total = int(total)
        self.completed = int(completed)
        self.unit = unit
        self.every_seconds = every_seconds
        self.every = every
        self.stream = sys.stderr if stream is None else stream
        self.mode: Mode = mode(self.stream, enabled=enabled)
        self._clock = clock
        self._fields: dict[str, Any] = {name: None for name in fields}
        self._started = False
        self._bar = None
        self._task = None

    # The life of a phase.

    def __enter__(self) -> Progress:
        now = self._clock()
        self._start_time = now
        self._start_completed = self.completed
        self._first: tuple[float, int] | None = None  # (time, completed) of the first update
        self._last_line = (now, self.completed)
        self._started = True
        if self.mode == "bar":
            self._start_bar()
        elif self.mode == "plain":
            if self.completed == 0:
                self._write(f"{self.description}: starting, {self.total} {self.unit}s")
            else:
                self._write(f"{self.description}: resuming at {self._count()}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._started = False
        if self.mode == "bar":
            self._bar.__exit__(exc_type, exc, tb)
        elif self.mode == "plain":
            self._write(self._final_line(exc_type))

    def update(self, completed: int, **fields: Any) -> None:
        """Sets the position to ``completed`` steps (absolute) and the fields given.

        Args:
          completed: steps done in the whole phase, including those before a resume.
          **fields: values to show, e.g. ``loss=0.12``; a name ending in ``_per_s`` is a
            rate (``samples_per_s=12.3`` shows ``12.3 samples/s``). A field keeps its last
            value until given again.
        """
        if not self._started:
            raise RuntimeError("Progress.update outside its `with` block")
        now = self._clock()
        self.completed = int(completed)
        self._fields.update(fields)
        if self._first is None:
            self._first = (now, self.completed)
        if self.mode == "bar":
            self._bar.update(self._task, completed=self.completed, info=self._fields_text())
        elif self.mode == "plain" and self._line_due(now):
            self._last_line = (now, self.completed)
            self._write(self._line(now))

    def advance(self, n: int = 1, **fields: Any) -> None:
        """Moves the position on by ``n`` steps; ``fields`` as in :meth:`update`."""
        self.update(self.completed + n, **fields)

    # What is measured.

    def rate(self, now: float | None = None) -> float | None:
        """Steps per second of this run; None before any step.

        From the first update on (the first step may include warm-up such as compilation);
        from the start of the phase while there is one update only.
        """
        now = self._clock() if now is None else now
        if self._first is not None and self._first[0] < now and self.completed > self._first[1]:
            t0, c0 = self._first
        else:
            t0, c0 = self._start_time, self._start_completed
        done = self.completed - c0
        if done <= 0 or now <= t0:
            return None
        return done / (now - t0)

    def time_left(self, now: float | None = None) -> float | None:
        """Seconds left at this run's rate; None while unknown."""
        rate = self.rate(now)
        if rate is None:
            return None
        return max(self.total - self.completed, 0) / rate

    # Lines.

    def _line_due(self, now: float) -> bool:
        t, c = self._last_line
        if self.every is not None and self.completed - c >= self.every:
            return True
        return self.every_seconds is not None and now - t >= self.every_seconds

    def _count(self) -> str:
        return f"{self.completed}/{self.total} {self.unit}s"

    def _fields_text(self) -> str:
        return ", ".join(
            format_field(k, v) if v is not None else f"{k} -" for k, v in self._fields.items()
        )

    def _line(self, now: float) -> str:
        percent = f" ({100 * self.completed // self.total}%)" if self.total > 0 else ""
        left = self.time_left(now)
        parts = [
            f"{self.description}: {self._count()}{percent}",
            *([self._fields_text()] if self._fields else []),
            format_rate(self.rate(now), self.unit),
            f"{format_duration(now - self._start_time)} elapsed",
            f"{'?' if left is None else format_duration(left)} left",
        ]
        return ", ".join(parts)

    def _final_line(self, exc_type: type[BaseException] | None) -> str:
        elapsed = self._clock() - self._start_time
        done = self.completed - self._start_completed
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        if self.completed >= self.total and exc_type is None:
            head = f"{self.description}: done, {self._count()} in {format_duration(elapsed)}"
        else:
            by = ""
            if exc_type is not None and not issubclass(exc_type, GeneratorExit):
                by = f" by {exc_type.__name__}"
            head = (
                f"{self.description}: stopped{by} at {self._count()} "
                f"after {format_duration(elapsed)}"
            )
        if rate is not None:
            head += f" ({format_rate(rate, self.unit)})"
        given = {k: v for k, v in self._fields.items() if v is not None}
        if given:
            head += ", " + ", ".join(format_field(k, v) for k, v in given.items())
        return head

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()  # a SLURM log is a file: show each line as it comes

    # The bar.

    def _start_bar(self) -> None:
        columns = [
            rp.TextColumn("{task.description}"),
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            _InfoColumn(self.unit),
            rp.TimeElapsedColumn(),
            rp.TextColumn("left"),
            rp.TimeRemainingColumn(),
        ]
        console = Console(file=self.stream, force_terminal=True)
        self._bar = rp.Progress(*columns, console=console, get_time=self._clock)
        self._bar.__enter__()
        self._task = self._bar.add_task(
            self.description,
            total=self.total,
            completed=self.completed,
            info=self._fields_text(),
        )


class _InfoColumn(rp.ProgressColumn):
    """The bar's fields and rate (rich's estimate): ``loss 0.1234, 12.3 samples/s, 6.01 steps/s``."""

    def __init__(self, unit: str):
        super().__init__(table_column=Column(no_wrap=True))  # the bar shrinks, not the text
        self.unit = unit

    def render(self, task: rp.Task) -> Text:
        rate = format_rate(task.speed, self.unit) if task.speed else ""
        return Text(", ".join(p for p in (task.fields["info"], rate) if p))


def track(
    items: Iterable[T],
    description: str,
    *,
    total: int | None = None,
    completed: int = 0,
    unit: str = "step",
    enabled: bool = True,
    **kwargs: Any,
) -> Iterator[T]:
    """Yields ``items``, advancing a :class:`Progress` by one after each.

    Args:
      items: what to iterate over (the steps not done yet); made a list first when ``total``
        is None.
      description: as for :class:`Progress`.
      total: steps in the whole phase; default ``completed + len(items)``.
      completed, unit, enabled: as for :class:`Progress`.
      **kwargs: the other arguments of :class:`Progress` (stream, every, every_seconds, ...).
    """
    if total is None:
        items = list(items)
        total = completed + len(items)
    with Progress(
        description, total, completed=completed, unit=unit, enabled=enabled, **kwargs
    ) as bar:
        for item in items:
            yield item
            bar.advance()
