"""The data layer's dask work on a ``dask.distributed`` cluster.

Statistics over 40 years of 0.25 deg ERA5 and its ingestion do not fit one machine's
threads. :func:`connect` opens a cluster for the length of a ``with`` block; while it is
open, every dask computation of this process runs on it (a distributed ``Client`` becomes
dask's default scheduler), so :func:`tellus.data.statistics.write_statistics` needs no
change, and :func:`tellus.data.writing.write_dataset` hands each time chunk to a worker,
which reads, converts and writes it itself (:func:`active_client`).

Where the cluster comes from (``scheduler``, the ``--scheduler`` option of ``tellus data
stats`` and ``tellus data ingest``):

* ``"local"``: a ``LocalCluster`` of worker processes on this machine, one per core;
* ``"threads"``: no cluster, dask's threads in this process (the path of every test);
* ``"tcp://host:8786"`` (any address with a protocol): a running scheduler, e.g. one that
  ``dask-jobqueue``'s ``SLURMCluster`` or a Kubernetes ``dask-kubernetes`` operator started;
* a path to a scheduler file (``dask scheduler --scheduler-file F``, ``dask-mpi``): the
  scheduler it names.

Workers on other machines must see the same files: the inputs, and the store being written
(a shared file system, or an fsspec URL such as ``gs://`` that every worker can reach).
The numbers are the same on any cluster: the reductions are dask's fixed tree over fixed
chunks, whatever worker runs each piece.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEDULERS = ("local", "threads")
ENV = "TELLUS_SCHEDULER"  # the default of --scheduler
CONNECT_TIMEOUT = "20s"


class ClusterError(RuntimeError):
    """A cluster that cannot be reached or started (the message says which and why)."""


def describe(scheduler: str) -> str:
    """What ``scheduler`` means, in words (for the option's help and the start-up line)."""
    if scheduler == "local":
        return "a LocalCluster of worker processes on this machine"
    if scheduler == "threads":
        return "dask's threads in this process"
    if "://" in scheduler:
        return f"the dask scheduler at {scheduler}"
    return f"the dask scheduler named in {scheduler}"


def check(scheduler: str) -> str:
    """``scheduler`` if it is one of :data:`SCHEDULERS`, an address with a protocol or an
    existing scheduler file.

    Raises:
      ValueError: none of those (the message names what was expected).
    """
    if scheduler in SCHEDULERS or "://" in scheduler or Path(scheduler).is_file():
        return scheduler
    raise ValueError(
        f"{scheduler!r} is not 'local', 'threads', a scheduler address such as "
        "tcp://host:8786 or an existing scheduler file"
    )


@contextlib.contextmanager
def connect(
    scheduler: str = "local",
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    timeout: str = CONNECT_TIMEOUT,
    quiet: bool = False,
) -> Iterator[Any]:
    """Opens ``scheduler`` (module docstring) for the ``with`` block; yields its
    ``distributed.Client`` (None for ``"threads"``). A local cluster is closed on exit; a
    remote one is only disconnected from.

    Args:
      n_workers: a local cluster's worker processes (default: one per core).
      threads_per_worker: a local cluster's threads per worker.
      timeout: how long to try to reach a remote scheduler.
      quiet: no start-up line.

    Raises:
      ClusterError: the scheduler cannot be reached, or the local cluster cannot start.
    """
    scheduler = check(scheduler)
    if scheduler == "threads":
        yield None
        return
    import distributed

    with contextlib.ExitStack() as stack:
        try:
            if scheduler == "local":
                cluster = stack.enter_context(
                    distributed.LocalCluster(
                        n_workers=n_workers or os.cpu_count() or 1,
                        threads_per_worker=threads_per_worker,
                        processes=True,
                        dashboard_address=None,
                    )
                )
                client = stack.enter_context(distributed.Client(cluster))
            elif "://" in scheduler:
                client = stack.enter_context(distributed.Client(scheduler, timeout=timeout))
            else:
                client = stack.enter_context(
                    distributed.Client(scheduler_file=scheduler, timeout=timeout)
                )
        except (OSError, TimeoutError) as e:
            raise ClusterError(f"cannot open {describe(scheduler)}: {e}") from e
        if not quiet:
            workers = client.scheduler_info().get("workers", {})
            threads = sum(w.get("nthreads", 0) for w in workers.values())
            print(
                f"dask: {describe(scheduler)}, {len(workers)} workers, {threads} threads"
                f" ({client.scheduler.address})"
            )
        yield client


def active_client() -> Any:
    """The ``distributed.Client`` dask computes on now (:func:`connect`), or None."""
    try:
        import distributed
    except ImportError:
        return None
    try:
        return distributed.default_client()
    except ValueError:  # no client in this process
        return None


__all__ = ["ENV", "SCHEDULERS", "ClusterError", "active_client", "check", "connect", "describe"]
