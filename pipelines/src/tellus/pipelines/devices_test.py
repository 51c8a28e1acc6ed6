"""The persistent compilation cache the training commands turn on."""

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
