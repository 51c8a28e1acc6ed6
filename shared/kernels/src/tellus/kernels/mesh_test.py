"""Meshes on the 8 simulated CPU devices of the test session."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tellus.kernels import mesh


def test_default_puts_every_device_on_data():
    m = mesh.make_mesh()
    assert m.axis_names == mesh.AXES
    assert dict(m.shape) == {"data": jax.device_count(), "fsdp": 1, "tensor": 1, "spatial": 1}
    assert all(t == jax.sharding.AxisType.Auto for t in m.axis_types)


@pytest.mark.parametrize(
    "sizes,shape",
    [
        ({"data": 4, "fsdp": 2}, (4, 2, 1, 1)),
        ({"data": 2, "fsdp": -1}, (2, 4, 1, 1)),
        ({"fsdp": 1, "tensor": 8}, (1, 1, 8, 1)),
        ({"data": 2, "spatial": 2, "tensor": 2}, (2, 1, 2, 2)),
    ],
)
def test_shapes(sizes, shape):
    assert tuple(mesh.make_mesh(sizes).shape.values()) == shape


def test_subset_of_devices_and_sharded_sum_matches_one_device():
    m = mesh.make_mesh({"data": 2, "fsdp": 2}, devices=jax.devices()[:4])
    assert m.devices.size == 4
    x = np.arange(32.0).reshape(8, 4)
    sharded = jax.device_put(x, jax.sharding.NamedSharding(m, jax.P(("data", "fsdp"))))
    assert len(sharded.sharding.device_set) == 4
    assert float(jnp.sum(sharded * 2)) == float(np.sum(x * 2))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"needs 6 devices, but 8 are available"):
        mesh.make_mesh({"data": 3, "fsdp": 2})
    with pytest.raises(ValueError, match=r"unknown mesh axes \['model'\]"):
        mesh.make_mesh({"model": 8})
    with pytest.raises(
        ValueError,
        match=r"cannot fill axis 'fsdp': 8 devices are not a "
        r"multiple of the other axes' product 3",
    ):
        mesh.make_mesh({"data": 3, "fsdp": -1})
    with pytest.raises(ValueError, match="at most one mesh axis may be -1"):
        mesh.MeshConfig({"data": -1, "fsdp": -1})


def test_parse_mesh_spec():
    assert mesh.parse_mesh_spec("data=32, fsdp=8") == {"data": 32, "fsdp": 8}
    with pytest.raises(ValueError, match=r"bad mesh entry 'data:32'"):
        mesh.parse_mesh_spec("data:32")
    with pytest.raises(ValueError, match="given twice"):
        mesh.parse_mesh_spec("data=2,data=4")
    with pytest.raises(ValueError, match=r"unknown mesh axes \['pipe'\]"):
        mesh.parse_mesh_spec("pipe=2")
