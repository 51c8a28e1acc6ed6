import io

import pytest

from tellus.data import progress
from tellus.data.progress import Progress


class Clock:
    """A fake monotonic clock: ``tick(s)`` moves it on."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def tick(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_a_line_every_n_steps_with_step_fields_rate_and_time_left():
    out, clock = io.StringIO(), Clock()
    with Progress(
        "train", 100, fields=("loss",), stream=out, every=10, every_seconds=None, clock=clock
    ) as bar:
        for step in range(25):
            clock.tick(0.5)  # 2 steps/s
            bar.update(step + 1, loss=1.0 / (step + 1), samples_per_s=64.0)
    lines = _lines(out)
    assert lines[0] == "train: starting, 100 steps"
    # Step 10 at 5 s: the rate is over steps 1 -> 10 (4.5 s), 2 steps/s; 90 left in 45 s.
    assert lines[1] == (
        "train: 10/100 steps (10%), loss 0.1, 64 samples/s, 2 steps/s, "
        "0:00:05 elapsed, 0:00:45 left"
    )
    assert lines[2] == (
        "train: 20/100 steps (20%), loss 0.05, 64 samples/s, 2 steps/s, "
        "0:00:10 elapsed, 0:00:40 left"
    )
    # The end: 25 steps in 12.5 s, and the last fields.
    assert lines[3] == (
        "train: stopped at 25/100 steps after 0:00:12 (2 steps/s), loss 0.04, 64 samples/s"
    )
    assert len(lines) == 4


def test_a_line_every_n_seconds_and_at_most_one_per_update():
    out, clock = io.StringIO(), Clock()
    with Progress("spin-up", 10, unit="chunk", stream=out, every_seconds=30, clock=clock) as bar:
        for _ in range(10):
            clock.tick(40.0)  # each chunk longer than every_seconds: one line per update
            bar.advance()
    lines = _lines(out)
    assert len(lines) == 1 + 10 + 1
    # Chunk 1 at 40 s: only the phase's start to measure from.
    assert lines[1] == "spin-up: 1/10 chunks (10%), 40 s/chunk, 0:00:40 elapsed, 0:06:00 left"
    assert lines[4] == "spin-up: 4/10 chunks (40%), 40 s/chunk, 0:02:40 elapsed, 0:04:00 left"
    assert lines[-1] == "spin-up: done, 10/10 chunks in 0:06:40 (40 s/chunk)"


def test_lines_by_time_skip_the_updates_in_between():
    out, clock = io.StringIO(), Clock()
    with Progress("write", 1000, stream=out, every_seconds=30, clock=clock) as bar:
        for k in range(100):
            clock.tick(1.0)
            bar.update(k + 1, loss=float(k))
    lines = _lines(out)
    # Lines at 30, 60 and 90 s (steps 30, 60, 90), then the end.
    assert [line.split(",")[0] for line in lines[1:-1]] == [
        "write: 30/1000 steps (3%)",
        "write: 60/1000 steps (6%)",
        "write: 90/1000 steps (9%)",
    ]
    assert lines[2].endswith("1 steps/s, 0:01:00 elapsed, 0:15:40 left")
    assert "loss 59" in lines[2]


def test_either_every_or_every_seconds_whichever_comes_first():
    out, clock = io.StringIO(), Clock()
    with Progress("x", 100, stream=out, every=5, every_seconds=10, clock=clock) as bar:
        for k, dt in enumerate([1.0] * 6 + [6.0] * 3 + [0.1] * 6):
            clock.tick(dt)
            bar.update(k + 1)
    steps = [line.split(",")[0] for line in _lines(out)[1:-1]]
    # By count at step 5; by time at 8 (13 s after 5, at 6 s a step); by count at 13.
    assert steps == ["x: 5/100 steps (5%)", "x: 8/100 steps (8%)", "x: 13/100 steps (13%)"]


def test_a_resumed_run_measures_its_own_rate_only():
    out, clock = io.StringIO(), Clock()
    with Progress("train", 1000, completed=800, stream=out, every=50, clock=clock) as bar:
        clock.tick(60.0)  # the first step compiles
        bar.update(801)
        for step in range(801, 900):
            clock.tick(0.25)
            bar.update(step + 1)
    lines = _lines(out)
    assert lines[0] == "train: resuming at 800/1000 steps"
    # Step 801, 60 s in (every_seconds): one step of this run in 60 s, 199 left.
    assert lines[1] == "train: 801/1000 steps (80%), 60 s/step, 0:01:00 elapsed, 3:19:00 left"
    # Step 851 (every 50): 50 steps in 12.5 s after the first update: 4 steps/s, 149 left.
    assert lines[2] == "train: 851/1000 steps (85%), 4 steps/s, 0:01:12 elapsed, 0:00:37 left"
    # The end: 100 steps of this run in 84.75 s, not 900 steps.
    assert lines[-1] == "train: stopped at 900/1000 steps after 0:01:25 (1.18 steps/s)"


def test_off_prints_nothing(monkeypatch):
    monkeypatch.setenv(progress.ENV, "off")
    out, clock = io.StringIO(), Clock()
    with Progress("x", 3, stream=out, every=1, clock=clock) as bar:
        for _ in range(3):
            clock.tick(1.0)
            bar.advance(loss=1.0)
    assert out.getvalue() == ""
    disabled = io.StringIO()
    monkeypatch.delenv(progress.ENV)
    with Progress("x", 3, stream=disabled, every=1, enabled=False) as bar:
        bar.advance()
    assert disabled.getvalue() == ""


def test_the_mode_follows_the_stream_and_the_environment(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert progress.mode(io.StringIO()) == "plain"
    assert progress.mode(Tty()) == "bar"
    assert progress.mode(Tty(), enabled=False) == "off"
    monkeypatch.setenv(progress.ENV, "plain")
    assert progress.mode(Tty()) == "plain"
    monkeypatch.setenv(progress.ENV, "BAR")
    assert progress.mode(io.StringIO()) == "bar"
    monkeypatch.setenv(progress.ENV, "auto")
    assert progress.mode(io.StringIO()) == "plain"
    monkeypatch.setenv(progress.ENV, "loud")
    with pytest.raises(ValueError, match="bar, plain, off"):
        progress.mode(io.StringIO())


def test_the_bar_on_a_terminal_shows_the_count_the_fields_and_the_time_left(monkeypatch):
    monkeypatch.setenv(progress.ENV, "bar")
    out, clock = io.StringIO(), Clock()
    with Progress("forecast", 4, unit="lead", fields=("loss",), stream=out, clock=clock) as bar:
        for _ in range(4):
            clock.tick(1.0)
            bar.advance(loss=0.5)
    text = out.getvalue()
    assert "forecast" in text and "4/4" in text and "loss 0.5" in text and "left" in text


def test_each_line_is_flushed():
    class Stream(io.StringIO):
        flushed = 0

        def flush(self):
            self.flushed += 1
            super().flush()

    out, clock = Stream(), Clock()
    with Progress("x", 2, stream=out, every=1, clock=clock) as bar:
        clock.tick(1.0)
        bar.advance()
    assert out.flushed == len(_lines(out)) == 3


def test_an_error_is_named_in_the_last_line():
    out, clock = io.StringIO(), Clock()
    with pytest.raises(KeyError), Progress("x", 5, stream=out, clock=clock) as bar:
        clock.tick(2.0)
        bar.advance(2)
        raise KeyError("boom")
    assert _lines(out)[-1] == "x: stopped by KeyError at 2/5 steps after 0:00:02 (1 steps/s)"


def test_track_advances_once_per_item():
    out, clock = io.StringIO(), Clock()
    seen = []
    for item in progress.track("abc", "letters", unit="letter", stream=out, every=1, clock=clock):
        clock.tick(2.0)
        seen.append(item)
    assert seen == ["a", "b", "c"]
    lines = _lines(out)
    assert lines[0] == "letters: starting, 3 letters"
    assert lines[-1] == "letters: done, 3/3 letters in 0:00:06 (2 s/letter)"


def test_formats():
    assert progress.format_duration(3725.4) == "1:02:05"
    assert progress.format_duration(90000) == "25:00:00"
    assert progress.format_field("loss", 0.123456) == "loss 0.1235"
    assert progress.format_field("samples_per_s", 1234.4) == "1234 samples/s"
    assert progress.format_field("samples_per_s", 12.34) == "12.3 samples/s"
    assert progress.format_field("epoch", 3) == "epoch 3"
    assert progress.format_rate(0.5, "chunk") == "2 s/chunk"
    assert progress.format_rate(250.0, "step") == "250 steps/s"


def test_update_outside_the_block_is_an_error():
    with pytest.raises(RuntimeError, match="with"):
        Progress("x", 2, stream=io.StringIO()).update(1)
