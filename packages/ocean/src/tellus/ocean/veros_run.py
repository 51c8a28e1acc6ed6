"""The subprocess that runs veros: ``python -m tellus.ocean.veros_run JOBS.json``.

veros switches JAX to 64-bit floats for the whole process when its core is imported, so the
model never runs in a process that trains or tests: :mod:`tellus.ocean.world` writes the jobs
to a JSON file and starts this module, which runs them one after the other and reports on
stdout, one JSON object a line: ``{"job": name, "month": k}`` after each model month and
``{"job": name, "chunk": c, "means": path, ...}`` after each chunk.

A job is one integration (the spin-up, or a run from the spun-up state) cut into chunks of
``chunk_months`` months. After each chunk the runner writes

1. the veros restart of the state at the chunk's end, ``state_dir/chunk_NNNN.h5``;
2. for a run, the chunk's monthly means at T points, ``state_dir/means_NNNN.npz``;

each beside its place and renamed into it, so that a kill leaves the old file or the new
one. The parent writes the means into the store, marks the chunk complete and only then
deletes the restart of the chunk's start; the spin-up deletes its own. A job therefore
resumes from the restart of its first unwritten chunk and, since veros's restart holds the
whole prognostic state and the iteration count is set back from the model time, continues
exactly as an uninterrupted run would. The runner imports neither xarray nor zarr (quick to
start) and exits when its parent dies (it checks at every step), so a killed build never
leaves a model running behind its back.

Monthly means are means over the tracer steps ending in the month (one sample a step).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np


def restart_path(state_dir: str | os.PathLike, chunk: int) -> Path:
    """The restart of the state at the start of ``chunk``."""
    return Path(state_dir) / f"chunk_{chunk:04d}.h5"


def means_path(state_dir: str | os.PathLike, chunk: int) -> Path:
    """The monthly means of ``chunk``, until the parent has written them into the store."""
    return Path(state_dir) / f"means_{chunk:04d}.npz"


def _report(**fields) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class _Means:
    """Sums of the fields sampled after each step of one month, on the model's grids."""

    def __init__(self):
        self.n = 0
        self.sums: dict[str, np.ndarray] = {}

    def add(self, vs) -> None:
        tau = int(vs.tau)
        fields = {
            "temp": vs.temp[..., tau],
            "salt": vs.salt[..., tau],
            "u": vs.u[..., tau],
            "v": vs.v[..., tau],
            "ssh": vs.ssh,
            "taux": vs.surface_taux,
            "tauy": vs.surface_tauy,
        }
        for k, x in fields.items():
            x = np.asarray(x, dtype=np.float64)
            self.sums[k] = self.sums[k] + x if k in self.sums else x.copy()
        self.n += 1

    def fields(self) -> dict[str, np.ndarray]:
        """The month's means at T points, [depth (top first), lat, lon] or [lat, lon]."""
        m = {k: v / self.n for k, v in self.sums.items()}

        def column(x):  # (x, y, z) with ghosts -> (z top first, y, x)
            return x[2:-2, 2:-2, ::-1].transpose(2, 1, 0)

        def plane(x):
            return x[2:-2, 2:-2].T

        # U points are the east faces of the T cells, V points the north faces: a T point's
        # value is the mean of its two faces (0 at a wall, where the flow through it is 0).
        u_t = 0.5 * (m["u"][1:-3] + m["u"][2:-2])
        v_t = 0.5 * (m["v"][:, 1:-3] + m["v"][:, 2:-2])
        taux_t = 0.5 * (m["taux"][1:-3] + m["taux"][2:-2])
        tauy_t = 0.5 * (m["tauy"][:, 1:-3] + m["tauy"][:, 2:-2])
        return {
            "temp": column(m["temp"]),
            "salt": column(m["salt"]),
            "u": u_t[:, 2:-2, ::-1].transpose(2, 1, 0),
            "v": v_t[2:-2, :, ::-1].transpose(2, 1, 0),
            "ssh": plane(m["ssh"]),
            "taux": taux_t[:, 2:-2].T,
            "tauy": tauy_t[2:-2, :].T,
        }


def _check_grid(vs, grid) -> None:
    """Raises unless veros put its T points and ocean where :mod:`tellus.ocean.planet` says."""
    from tellus.ocean import planet

    got = {
        "longitude": np.asarray(vs.xt)[2:-2],
        "latitude": np.asarray(vs.yt)[2:-2],
        "depth": -np.asarray(vs.zt)[::-1],
    }
    for name, values in got.items():
        want = getattr(grid, name)
        if values.shape != want.shape or not np.allclose(values, want, atol=1e-6):
            raise RuntimeError(f"veros's T-point {name} {values} differ from the planet's {want}")
    mask = np.asarray(vs.maskT)[2:-2, 2:-2, :].transpose(2, 1, 0)[::-1]
    if not np.array_equal(mask, np.broadcast_to(planet.ocean_mask(grid), mask.shape) > 0):
        raise RuntimeError("veros's ocean mask differs from the planet's (flat bottom expected)")


def run_job(job: dict, parent: int | None) -> None:
    """Runs one job (see the module docstring); the keys are those :mod:`tellus.ocean.world`
    writes."""
    from tellus.ocean import planet, veros_setup

    grid = planet.Grid(**{**job["grid"], "thickness": tuple(job["grid"]["thickness"])})
    params = planet.OceanParams(**job["params"])
    chunk_months, n_months = job["chunk_months"], job["n_months"]
    n_chunks = -(-n_months // chunk_months)
    first, state_dir = job["first_chunk"], Path(job["state_dir"])
    state_dir.mkdir(parents=True, exist_ok=True)
    # Restarts go to one file name, renamed after each write: changing a veros setting
    # would make its JAX kernels compile again.
    override = {"restart_output_filename": str(state_dir / "restart.tmp.h5")}
    if job["restart_in"]:
        override["restart_input_filename"] = job["restart_in"]
    sim = veros_setup.PlanetSetup(
        grid,
        params,
        run_start=job["start_time"],
        n_months=n_months,
        stream=job["stream"],
        override=override,
    )
    sim.setup()
    state = sim.state
    vs = state.variables
    _check_grid(vs, grid)
    expected = job["start_time"] + first * chunk_months * planet.MONTH
    if abs(float(vs.time) - expected) > 1.0:
        raise RuntimeError(
            f"the restart {job['restart_in']} is at model time {float(vs.time)} s, "
            f"not {expected} s (the start of chunk {first})"
        )
    with vs.unlock():  # as if the run had not stopped (veros's first iteration is special)
        vs.itt = round(float(vs.time) / params.dt_tracer)
    mask = planet.ocean_mask(grid)
    stop_after = job.get("stop_after")
    for c in range(first, n_chunks):
        months = range(c * chunk_months, min((c + 1) * chunk_months, n_months))
        monthly = []
        for k in months:
            means = _Means()
            for _ in range(params.steps_per_month):
                if parent is not None and os.getppid() != parent:
                    raise SystemExit(3)  # the build was killed: stop writing
                sim.step(state)
                means.add(vs)
            monthly.append(means.fields())
            _report(job=job["name"], month=k + 1)
        stacked = {key: np.stack([m[key] for m in monthly]) for key in monthly[0]}
        _save_restart(state, restart_path(state_dir, c + 1))
        event = {"job": job["name"], "chunk": c}
        if job["store"]:
            path = means_path(state_dir, c)
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez(tmp, **stacked)
            os.replace(tmp, path)
            event["means"] = str(path)
        else:
            restart_path(state_dir, c).unlink(missing_ok=True)
        temp = np.where(mask > 0, stacked["temp"], np.nan)
        event["mean_temperature"] = float(planet.volume_mean(grid, temp).mean())
        event["max_speed"] = float(np.nanmax(np.hypot(stacked["u"], stacked["v"])))
        _report(**event)
        if stop_after is not None and c + 1 - first >= stop_after:
            return
    final = job.get("final_restart")
    if final:
        os.replace(restart_path(state_dir, n_chunks), final)


def _save_restart(state, path: Path) -> None:
    """veros's restart of ``state`` at ``path``: written to the setup's restart file name,
    then renamed into place."""
    from veros import restart as veros_restart

    veros_restart.write_restart(state, force=True)
    os.replace(state.settings.restart_output_filename, path)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    from veros import runtime_settings

    runtime_settings.update(
        backend=spec["backend"],
        float_type="float64",
        linear_solver="scipy",
        loglevel=spec.get("loglevel", "warning"),
    )
    for job in spec["jobs"]:
        run_job(job, spec.get("parent"))


if __name__ == "__main__":
    main()
