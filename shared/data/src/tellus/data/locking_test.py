"""Tests of the directory lock, with real holder processes that are stopped or SIGKILLed."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from tellus.data import errors, locking, mock, validation

# Holds the lock on argv[1] until its stdin closes; with "fork", first forks a child that
# outlives it (as a multiprocessing worker would).
_HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from tellus.data import locking
    with locking.DirectoryLock(sys.argv[1], "test holder"):
        if sys.argv[2:] == ["fork"]:
            child = os.fork()
            if child == 0:
                time.sleep(60)
                os._exit(0)
            print("child", child, flush=True)
        print("ready", flush=True)
        sys.stdin.readline()
    """
)


def _start_holder(tmp_path, directory, *extra):
    script = tmp_path / "holder.py"
    script.write_text(_HOLDER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(directory), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = [proc.stdout.readline()]
    while lines[-1].startswith("child"):
        lines.append(proc.stdout.readline())
    assert lines[-1] == "ready\n", lines
    return proc, lines


def _kill(proc):
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()


def test_second_process_is_refused_with_one_line_naming_the_holder(tmp_path, caplog):
    run = tmp_path / "runs" / "atmosphere"
    holder, _ = _start_holder(tmp_path, run)
    try:
        with pytest.raises(errors.LockedError) as refused:
            locking.DirectoryLock(run, "second").acquire()
        message = str(refused.value)
        assert message.startswith(f"{run} is in use by pid {holder.pid} on host ")
        assert socket.gethostname() in message and "(test holder, since " in message
        assert message.endswith("; wait for it or stop it") and "\n" not in message
        assert isinstance(refused.value, errors.IngestError)
        assert refused.value.holder["pid"] == holder.pid
        record = json.loads((run / locking.LOCK_NAME).read_text())
        assert record["purpose"] == "test holder" and "holder.py" in record["command"]
    finally:
        holder.stdin.close()  # a normal release: the lock file goes away
        assert holder.wait(timeout=30) == 0
        holder.stdout.close()
    assert not (run / locking.LOCK_NAME).exists()
    with caplog.at_level(logging.WARNING), locking.DirectoryLock(run, "next") as lock:
        assert lock.holder()["pid"] == os.getpid()
    assert caplog.records == []


def test_lock_of_a_killed_process_is_taken_over_with_one_log_line(tmp_path, caplog):
    holder, _ = _start_holder(tmp_path, tmp_path)
    _kill(holder)
    assert (tmp_path / locking.LOCK_NAME).exists()  # left behind, but its flock is gone
    with caplog.at_level(logging.WARNING), locking.DirectoryLock(tmp_path, "after") as lock:
        assert lock.holder()["purpose"] == "after"
    (record,) = caplog.records
    line = record.getMessage()
    assert f"pid {holder.pid}" in line and "no longer running" in line and "\n" not in line
    assert not (tmp_path / locking.LOCK_NAME).exists()


def test_a_forked_child_does_not_keep_its_dead_parents_lock(tmp_path, caplog):
    holder, lines = _start_holder(tmp_path, tmp_path, "fork")
    child = int(lines[0].split()[1])
    try:
        _kill(holder)
        with caplog.at_level(logging.WARNING), locking.DirectoryLock(tmp_path, "after"):
            pass
        assert "no longer running" in caplog.records[0].getMessage()
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_dead_holders_file_still_open_elsewhere_is_replaced(tmp_path, caplog):
    # The file's flock is held by a live process (say a worker that inherited it), but the
    # holder it names is gone from this host.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record = {
        "pid": gone.pid,
        "hostname": socket.gethostname(),
        "pid_namespace": locking._pid_namespace(),
        "purpose": "long gone",
    }
    keeper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'w'); f.write(sys.argv[2]); f.flush();"
            "fcntl.flock(f, fcntl.LOCK_EX); print('ready', flush=True); sys.stdin.readline()",
            str(tmp_path / locking.LOCK_NAME),
            json.dumps(record),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert keeper.stdout.readline() == "ready\n"
        with caplog.at_level(logging.WARNING), locking.DirectoryLock(tmp_path, "new") as lock:
            assert lock.holder()["purpose"] == "new"
        (line,) = [r.getMessage() for r in caplog.records]
        assert f"pid {gone.pid}" in line and "long gone" in line
    finally:
        _kill(keeper)


def test_reentrant_in_one_process(tmp_path):
    with locking.DirectoryLock(tmp_path, "outer") as outer:
        with locking.DirectoryLock(tmp_path, "inner") as inner:
            assert inner.held
        assert outer.held and outer.holder()["purpose"] == "outer"
    assert not (tmp_path / locking.LOCK_NAME).exists()


def test_a_store_lock_is_beside_the_store_which_stays_readable(tmp_path):
    # Beside, not inside: zarr warns about any file in a store that is not part of the
    # hierarchy ("Object at .tellus.lock is not recognized as a component of a Zarr
    # hierarchy"), which the test settings turn into an error.
    store = tmp_path / "s.zarr"
    mock.mock_era5(n_lat=5, n_lon=8).to_zarr(store, zarr_format=3, consolidated=False)
    with locking.store_lock(store, "beside"):
        assert (tmp_path / "s.zarr.lock").exists()
        validation.open_dataset(store)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]
    # Remote stores have no flock: nothing is locked.
    assert not isinstance(locking.store_lock("gs://bucket/s.zarr", "remote"), locking.DirectoryLock)
