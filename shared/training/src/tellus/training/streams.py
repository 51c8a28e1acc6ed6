"""The one batch stream of training: a grain loader with a checkpointable position, read ahead.

:class:`LoaderStream` wraps :func:`tellus.data.loader.make_loader` over any random-access
source (a :class:`~tellus.data.sources.WindowSource`, a monthly ENSO source, an in-memory
:class:`ArraySource`): a seeded shuffle that is the same on every process and every run,
this process's shard of every global batch, endless epochs, and a JSON state (the grain
iterator state) saved with each checkpoint so that a resumed run reads exactly the batches
the uninterrupted run would have read.

:class:`Prefetch` runs a stream in a background thread, ``depth`` batches ahead of the
training step, and hands each batch over together with the stream state *after* it: the
state saved at a checkpoint is that of the last batch the step consumed, never of a batch
read ahead. With ``place`` it also puts the batch on the devices in that thread, so host
reads, stacking and the transfer all overlap the compiled step.
"""

from __future__ import annotations

import base64
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import grain
import numpy as np

from tellus.data import loader as loader_lib

Batch = dict[str, Any]


class Stream(Protocol):
    """What ``fit`` reads batches from."""

    def __next__(self) -> Batch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class ArraySource:
    """A random-access source over arrays held in memory (first axis: samples).

    Args:
      arrays: ``{key: array [n, ...]}``, every array with the same first dimension.
      name: shown in ``repr`` (grain compares it when restoring a state).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], name: str = "arrays"):
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"arrays differ in their number of samples: {lengths}")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.name = name
        self._n = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {k: v[int(index)] for k, v in self.arrays.items()}

    def __repr__(self) -> str:
        shapes = {k: v.shape for k, v in self.arrays.items()}
        return f"ArraySource({self.name!r}, {shapes})"


class LoaderStream:
    """Endless shuffled batches of ``source`` through the grain loader.

    Args:
      source: random-access samples (dicts of arrays).
      global_batch_size: samples per step over all processes.
      seed: shuffling seed.
      keys: the sample keys to keep (default every key); others are dropped before
        batching (e.g. an ``init_time`` the step does not use).
      shard_index, shard_count: this process's shard (default from JAX).
      read_threads, prefetch: grain's in-process read-ahead.

    Raises:
      ValueError: the source cannot fill one global batch.
    """

    def __init__(
        self,
        source: Any,
        global_batch_size: int,
        seed: int = 0,
        *,
        keys: Sequence[str] | None = None,
        shard_index: int | None = None,
        shard_count: int | None = None,
        read_threads: int = 4,
        prefetch: int = 8,
    ):
        if len(source) < global_batch_size:
            raise ValueError(
                f"{len(source)} samples cannot fill a batch of {global_batch_size} ({source!r})"
            )
        self.source = source
        self.global_batch_size = global_batch_size
        config = loader_lib.LoaderConfig(
            global_batch_size=global_batch_size,
            seed=seed,
            shuffle=True,
            num_epochs=None,
            read_threads=read_threads,
            prefetch_buffer_size=prefetch,
        )
        ops = () if keys is None else (_Select(tuple(keys)),)
        self._loader = loader_lib.make_loader(
            source, config, shard_index=shard_index, shard_count=shard_count, operations=ops
        )
        self._it = iter(self._loader)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        return next(self._it)

    def state_dict(self) -> dict[str, Any]:
        state = self._it.get_state()
        if isinstance(state, bytes):
            return {"grain": base64.b64encode(state).decode("ascii")}
        return {"grain_json": state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "grain" in state:
            self._it.set_state(base64.b64decode(state["grain"]))
        elif "grain_json" in state:
            self._it.set_state(state["grain_json"])
        else:
            raise ValueError(f"not a LoaderStream state: keys {sorted(state)}")


class Mapped:
    """``stream`` with ``fn`` applied to every batch; its position is the stream's own.

    For per-batch work that is not the source's (a teacher model's forecasts added as soft
    targets, :func:`tellus.atmosphere.prune.teacher_targets`): ``fn`` must be a function of
    the batch alone, so that a run resumed from ``state_dict()`` reads the batches the
    uninterrupted run would have read. Under :class:`Prefetch` it runs in the reading
    thread, overlapping the training step.
    """

    def __init__(self, stream: Stream, fn: Callable[[Batch], Batch]):
        self.stream = stream
        self.fn = fn

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        return self.fn(next(self.stream))

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stream.load_state_dict(state)


class _Select(grain.transforms.Map):
    """Keeps the named keys of a sample."""

    def __init__(self, keys: tuple[str, ...]):
        self.keys = keys

    def map(self, sample: dict[str, Any]) -> dict[str, Any]:
        return {k: sample[k] for k in self.keys}


class Prefetch:
    """Reads ``stream`` ``depth`` batches ahead in a background thread.

    Args:
      stream: the stream to read.
      depth: batches read ahead; 0 reads each batch when it is asked for, in the caller's
        thread (no overlap with compute: for measuring what the read-ahead buys).
      place: applied to each batch in the thread (e.g. ``jax.device_put`` with the batch
        sharding); default the identity.

    ``state_dict()`` is the state of the stream after the last batch handed out by
    ``next``; ``load_state_dict`` stops the thread, restores the stream and starts again.
    An exception in the thread is raised by the next ``next``.
    """

    def __init__(self, stream: Stream, depth: int = 2, place: Callable[[Batch], Any] | None = None):
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        self.stream = stream
        self.depth = depth
        self.place = place or (lambda b: b)
        self._state = stream.state_dict()
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.place(next(self.stream))
                item = (batch, self.stream.state_dict(), None)
            except BaseException as e:  # handed to the consumer
                item = (None, None, e)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return

    def _start(self) -> None:
        self._stop.clear()
        self._queue = queue.Queue(maxsize=self.depth)
        self._thread = threading.Thread(target=self._run, name="tellus-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self.depth == 0:
            batch = self.place(next(self.stream))
            self._state = self.stream.state_dict()
            return batch
        if self._thread is None:
            self._start()
        batch, state, error = self._queue.get()
        if error is not None:
            self._thread = None
            raise error
        self._state = state
        return batch

    def state_dict(self) -> dict[str, Any]:
        return self._state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.close()
        self.stream.load_state_dict(state)
        self._state = dict(state)

    def close(self) -> None:
        """Stops the reading thread (the stream stays where the last handed-out batch left it
        only through ``state_dict``; batches read ahead are dropped)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
