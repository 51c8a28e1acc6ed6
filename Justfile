# Tellus tasks. `uv run just --list` shows them; each is one uv command.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Builds the missing embedded data (atmosphere, ENSO worlds, a short veros ocean), pretrains one
# Earth model on the three domains, fine-tunes it to Nino3.4 at 1-24 months (every phase
# resumes; about 30 min from a fresh clone, see the README).
# The main job: the foundation-model story, scored against baselines and from scratch (runs/demo/report).
demo *ARGS:
    uv run tellus demo {{ARGS}}

# The atmosphere's story: the Pangu CPU preset against persistence and climatology (runs/report).
demo-atmosphere:
    uv run tellus demo atmosphere

# ENSO's story: the worlds, the ResoNet ensemble, its skill and explanations (runs/enso_report).
demo-enso:
    uv run tellus demo enso

# The ocean's story: the veros ocean (spin-up included), the ORCA-DL-style forecaster, its scores.
demo-ocean: build-ocean train-ocean evaluate-ocean

# Train the lead models of the CPU atmosphere preset on the embedded dataset (resumable).
train-atmosphere *ARGS:
    uv run tellus train atmosphere {{ARGS}}

# Score the trained atmosphere models: scorecard, curves and maps in runs/report.
evaluate-atmosphere *ARGS:
    uv run tellus evaluate atmosphere {{ARGS}}

# A 10-day forecast from the first test-period date, streamed to runs/forecast.zarr.
forecast-atmosphere *ARGS:
    uv run tellus forecast atmosphere --init 2000-10-28T00 --lead 10d {{ARGS}}

# Build the ENSO worlds if missing, then pretrain + fine-tune the ResoNet ensemble (resumable).
train-enso *ARGS:
    uv run tellus train enso {{ARGS}}

# ENSO skill by lead and season against the baselines and the optimum, with explanations.
evaluate-enso *ARGS:
    uv run tellus evaluate enso {{ARGS}}

# The ensemble's Nino3.4 at leads 1-24 months from 1990-12 (observed test years), in runs/enso_forecast.nc.
forecast-enso *ARGS:
    uv run tellus forecast enso --init 1990-12 {{ARGS}}

# deptry, run on each distribution against its own pyproject dependencies. deptry sees
# `tellus` only as a top-level name, so it is first party here and which tellus-* packages
# each distribution declares is checked by tests/workspace_dependencies_test.py; test modules
# are left out (they run on the root dev group: pytest). A new tellus-* distribution joins
# the map.
deptry_flags := "--known-first-party tellus --extend-exclude '.*_test[.]py$' --extend-exclude '.*/conftest[.]py$' --package-module-name-map tellus-data=tellus,tellus-kernels=tellus,tellus-training=tellus,tellus-evaluation=tellus,tellus-atmosphere=tellus,tellus-enso=tellus,tellus-ocean=tellus"

# The whole test suite, after lint, the import contract (pyproject [tool.importlinter]) and
# every distribution's declared dependencies (deptry).
test:
    uv run ruff check .
    uv run ruff format --check .
    uv run lint-imports
    rc=0; for p in shared/*/pyproject.toml packages/*/pyproject.toml pipelines/pyproject.toml; do d="${p%/pyproject.toml}"; echo "deptry $d"; uv run deptry "$d" --config "$p" {{ deptry_flags }} || rc=1; done; exit $rc
    uv run pytest -n 2 --dist loadscope -q --durations=15

# Lint and format check only.
lint:
    uv run ruff check .
    uv run ruff format --check .

# Build the embedded Held-Suarez atmosphere dataset (cached; resumes after a kill).
build-atmosphere:
    uv run tellus data build atmosphere

# The spin-up is cached (`just build-ocean --spinup` runs it alone); the runs resume after a kill.
# Build the embedded veros ocean in $TELLUS_DATA/ocean: spin-up, then the model and observed runs.
build-ocean *ARGS:
    uv run tellus data build ocean {{ARGS}}

# The CPU recipe: 450 steps on the model run, 120 on observed years 1-4, batches of 2 (resumes after a kill).
# Train the ocean forecaster on $TELLUS_DATA/ocean (build it first with `just build-ocean`), into runs/ocean.
train-ocean *ARGS:
    uv run tellus train ocean {{ARGS}}

# Scores on the observed test years (the last 3), the rollout check and the scorecard, in runs/ocean_report.
evaluate-ocean *ARGS:
    uv run tellus evaluate ocean {{ARGS}}

# The ocean state 1-12 months after 2005-01 (the first test month), in runs/ocean_forecast.zarr.
forecast-ocean *ARGS:
    uv run tellus forecast ocean --init 2005-01 {{ARGS}}

# The CPU recipe: the cpu denoiser on anomalies, 1000 steps of 4 model-run months, 250 on observed years 1-4 (resumes).
# Pretrain the ocean diffusion model (ReconMOST) on $TELLUS_DATA/ocean/model.zarr, into runs/ocean_recon.
train-recon *ARGS:
    uv run tellus train ocean_recon {{ARGS}}

# The last 12 observed months at 1-10 % coverage, DDIM 50 steps, 4 samples; in runs/ocean_recon_report.
# Reconstructions from Argo-like profiles against climatology, nearest neighbour and GP OI.
evaluate-recon *ARGS:
    uv run tellus evaluate ocean_recon {{ARGS}}

# DIR defaults to $TELLUS_DATA/ocean; prints pass/fail with the values, exit 1 on a failure.
# Physical sanity of the built ocean stores: gyres, Drake Passage, stratification, drift.
check-ocean DIR="":
    d="{{DIR}}"; d="${d:-${TELLUS_DATA:-data}/ocean}"; uv run python -m tellus.ocean.sanity "$d/model.zarr" "$d/observed.zarr"

# Loader samples/s next to raw sequential Zarr read throughput of the same store.
bench-data *ARGS:
    uv run python -m tellus.data.bench {{ARGS}}

# Wall time of training steps through the loader against batches already in memory.
bench-loader *ARGS:
    uv run python -m tellus.atmosphere.bench_loader {{ARGS}}

# The ocean forecaster's and denoiser's training and inference steps against the matmul rate.
bench-ocean *ARGS:
    uv run python -m tellus.ocean.bench {{ARGS}}

# Pretrains the Earth model on the three worlds (and each alone), fine-tunes it to three
# unseen tasks at 10/30/100 % of their data, compares with from scratch (resumable).
fm-study *ARGS:
    uv run tellus study fm {{ARGS}}

# Entropy-guided attention pruning of the trained atmosphere lead model and ENSO ensemble:
# 0/25/40/50 % (0/1/2 ENSO blocks) removed, throughput, memory and skill: runs/prune_study.
prune-study *ARGS:
    uv run tellus study prune {{ARGS}}

# Every model against this machine's matmul rate, in one run: runs/bench/bench.json, compared with the last.
bench *ARGS:
    uv run tellus bench {{ARGS}}
