"""The persistent compilation cache and the random-number generator form the training
commands set."""

from __future__ import annotations

import jax
import pytest

from tellus.pipelines import devices


@pytest.fixture
def restore_cache_config():
    before = jax.config.jax_compilation_cache_dir
    yield
    jax.config.update("jax_compilation_cache_dir", before)


def test_compile_cache_folder_from_the_environment(monkeypatch, tmp_path, restore_cache_config):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert devices.compile_cache() == str(tmp_path / "jax")  # JAX's own variable wins
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv(devices.CACHE_ENV, str(tmp_path / "mine"))
    assert devices.compile_cache() == str(tmp_path / "mine")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    monkeypatch.delenv(devices.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert devices.compile_cache() == str(tmp_path / "xdg" / "tellus" / "jax")


def test_compile_cache_off(monkeypatch, restore_cache_config):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv(devices.CACHE_ENV, "off")
    assert devices.compile_cache() is None
    assert jax.config.jax_compilation_cache_dir == before


@pytest.fixture
def restore_rng_config():
    before = jax.config.jax_threefry_partitionable
    yield
    jax.config.update("jax_threefry_partitionable", before)


def test_the_cpu_gets_the_fast_compiling_rng_unless_the_environment_says(
    monkeypatch, restore_rng_config
):
    monkeypatch.delenv(devices.RNG_ENV, raising=False)
    jax.config.update("jax_threefry_partitionable", True)
    assert not devices.cpu_rng("gpu") and jax.config.jax_threefry_partitionable
    assert devices.cpu_rng("cpu") and not jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", True)
    monkeypatch.setenv(devices.RNG_ENV, "true")  # the user's choice stands
    assert not devices.cpu_rng("cpu") and jax.config.jax_threefry_partitionable
