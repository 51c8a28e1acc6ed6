# Tellus tasks. `uv run just --list` shows them; each is one uv command.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The main job on the embedded default.
demo:
    uv run tellus demo

# The whole test suite, with lint first.
test:
    uv run ruff check .
    uv run pytest -n 2 -q

# Lint and format check only.
lint:
    uv run ruff check .
    uv run ruff format --check .

# Build the embedded Held-Suarez atmosphere dataset (cached; resumes after a kill).
build-atmosphere:
    uv run tellus data build atmosphere

# Loader samples/s next to raw sequential Zarr read throughput of the same store.
bench-data *ARGS:
    uv run python -m tellus.data.bench {{ARGS}}

# Every benchmark.
bench: bench-data
