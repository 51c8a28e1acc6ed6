"""The grain pipeline: shuffle, shard across JAX processes, batch, prefetch, checkpoint.

:func:`make_loader` wraps a random-access source (a
:class:`~tellus.data.sources.WindowSource`) in a ``grain.DataLoader``:

* an ``IndexSampler`` shuffles the *global* index stream with ``seed`` (a new permutation
  every epoch, the same for every process and every run with that seed);
* the DataLoader's ``ShardOptions`` give process ``p`` of ``P`` the global positions
  ``p, p + P, p + 2P, ...``: with a per-process batch of ``B / P``, global batch ``k`` is
  positions ``[kB, (k+1)B)`` and each process reads only its ``B / P`` of them;
* ``Batch`` stacks samples into ``[batch, ...]`` arrays;
* ``worker_count > 0`` prefetches in worker processes. The default is 0: on a 2-core machine
  worker processes were slower than reading in-process (tensorstore already reads
  concurrently, and ``read_threads`` overlap samples; see ``docs/performance.md``);
* the iterator's ``get_state()`` / ``set_state()`` give a checkpointable position (bytes),
  so a restarted run continues on the same next batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import grain
from absl import flags


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """How samples are drawn and batched (the training-side half of the data config).

    Attributes:
      global_batch_size: samples per step over all processes; divisible by the process count.
      seed: shuffling seed (32-bit, >= 0).
      shuffle: shuffle the windows (reshuffled every epoch).
      num_epochs: passes over the windows, None for endless.
      worker_count: worker processes prefetching batches (0: read in this process).
      worker_buffer_size: batches each worker prepares ahead.
      read_threads: threads reading samples concurrently in each process.
      prefetch_buffer_size: samples read ahead per process (0: no read-ahead).
    """

    global_batch_size: int
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = None
    worker_count: int = 0
    worker_buffer_size: int = 1
    read_threads: int = 4
    prefetch_buffer_size: int = 8

    def __post_init__(self):
        if self.global_batch_size < 1:
            raise ValueError(f"global_batch_size must be >= 1, got {self.global_batch_size}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be a 32-bit int >= 0, got {self.seed}")
        if self.num_epochs is not None and self.num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1 or None, got {self.num_epochs}")
        if self.worker_count < 0 or self.read_threads < 0 or self.prefetch_buffer_size < 0:
            raise ValueError("worker_count, read_threads and prefetch_buffer_size must be >= 0")


def shard_options(
    shard_index: int | None = None, shard_count: int | None = None
) -> grain.sharding.ShardOptions:
    """This process's shard: explicit, or from ``jax.process_index() / process_count()``.

    Remainders are dropped so that every process runs the same number of steps.
    """
    if (shard_index is None) != (shard_count is None):
        raise ValueError("give both shard_index and shard_count, or neither")
    if shard_index is None:
        return grain.sharding.ShardByJaxProcess(drop_remainder=True)
    return grain.sharding.ShardOptions(shard_index, shard_count, drop_remainder=True)


def make_loader(
    source: grain.sources.RandomAccessDataSource,
    config: LoaderConfig,
    *,
    shard_index: int | None = None,
    shard_count: int | None = None,
    operations: Sequence[grain.transforms.Map] = (),
) -> grain.DataLoader:
    """A grain DataLoader yielding this process's part of each global batch.

    Args:
      source: random-access samples (dicts of arrays).
      config: batching, shuffling, epochs and prefetch.
      shard_index, shard_count: this process's shard; default from JAX.
      operations: per-sample transformations applied before batching.

    Returns:
      The loader; ``iter(loader)`` yields dicts of ``[global_batch_size / shard_count, ...]``
      arrays and supports ``get_state()`` / ``set_state()``. Incomplete batches are dropped.

    Raises:
      ValueError: if the global batch does not divide among the shards.
    """
    if config.worker_count > 0 and not flags.FLAGS.is_parsed():
        # grain's worker processes read absl flags (profiling options), which raise unless
        # parsed; outside an absl app nothing parses them, so take the defaults.
        flags.FLAGS.mark_as_parsed()
    shards = shard_options(shard_index, shard_count)
    per_shard, rem = divmod(config.global_batch_size, shards.shard_count)
    if rem:
        raise ValueError(
            f"global_batch_size {config.global_batch_size} does not divide among "
            f"{shards.shard_count} processes"
        )
    sampler = grain.samplers.IndexSampler(
        num_records=len(source),
        shard_options=grain.sharding.NoSharding(),  # The DataLoader shards (see module doc).
        shuffle=config.shuffle,
        num_epochs=config.num_epochs,
        seed=config.seed,
    )
    read_options = grain.ReadOptions(
        num_threads=config.read_threads,
        prefetch_buffer_size=max(config.prefetch_buffer_size, config.read_threads)
        if config.prefetch_buffer_size
        else 0,
    )
    return grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=[*operations, grain.transforms.Batch(per_shard, drop_remainder=True)],
        worker_count=config.worker_count,
        worker_buffer_size=config.worker_buffer_size,
        shard_options=shards,
        read_options=read_options,
    )


def steps_per_epoch(source_len: int, global_batch_size: int) -> int:
    """Full global batches in one pass over ``source_len`` windows."""
    return source_len // global_batch_size
