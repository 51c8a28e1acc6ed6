import numpy as np
import pytest

from tellus.training import streams, toy_model


def _stream(seed=0, n=24, batch=4):
    return streams.LoaderStream(toy_model.SyntheticSource(seed, n=n), batch, seed=seed)


def _xs(stream, k):
    return [next(stream)["x"] for _ in range(k)]


def test_loader_stream_resumes_on_the_same_next_batch_across_epochs():
    ref = _xs(_stream(), 10)  # 6 batches an epoch: crosses into the second epoch
    s = _stream()
    _xs(s, 4)
    state = s.state_dict()
    again = _stream()
    again.load_state_dict(state)
    for got, want in zip(_xs(again, 6), ref[4:], strict=True):
        np.testing.assert_array_equal(got, want)
    # Every window once per epoch, reshuffled the next.
    first = np.concatenate([x[:, 0, 0, 0] for x in ref[:6]])
    second = np.concatenate([x[:, 0, 0, 0] for x in ref[6:10]])
    assert len(set(first.tolist())) == 24
    assert not np.array_equal(first[:16], second)


def test_prefetch_hands_out_the_state_of_the_batch_it_gave_not_of_those_read_ahead():
    ref = _xs(_stream(), 8)
    p = streams.Prefetch(_stream(), depth=3)
    for got, want in zip(_xs(p, 3), ref[:3], strict=True):
        np.testing.assert_array_equal(got, want)
    state = p.state_dict()
    p.close()
    resumed = streams.Prefetch(_stream(), depth=3)
    resumed.load_state_dict(state)
    for got, want in zip(_xs(resumed, 5), ref[3:8], strict=True):
        np.testing.assert_array_equal(got, want)
    resumed.close()


def test_a_mapped_stream_maps_each_batch_and_resumes_at_the_streams_position():
    ref = _xs(_stream(), 6)
    m = streams.Mapped(_stream(), lambda b: {**b, "x": 2.0 * b["x"] + 1.0})
    for got, want in zip(_xs(m, 2), ref[:2], strict=True):
        np.testing.assert_array_equal(got, 2.0 * want + 1.0)
    state = m.state_dict()
    resumed = streams.Prefetch(streams.Mapped(_stream(), lambda b: {**b, "x": -b["x"]}), depth=2)
    resumed.load_state_dict(state)
    for got, want in zip(_xs(resumed, 4), ref[2:6], strict=True):
        np.testing.assert_array_equal(got, -want)
    resumed.close()


def test_depth_0_reads_in_the_callers_thread_with_the_same_batches_and_state():
    ref = _xs(_stream(), 4)
    p = streams.Prefetch(_stream(), depth=0)
    for got, want in zip(_xs(p, 4), ref, strict=True):
        np.testing.assert_array_equal(got, want)
    assert p._thread is None
    s = _stream()
    _xs(s, 4)
    assert p.state_dict() == s.state_dict()


def test_prefetch_raises_the_readers_error_and_keys_are_selected():
    class Broken:
        def __next__(self):
            raise OSError("disk gone")

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    with pytest.raises(OSError, match="disk gone"):
        next(streams.Prefetch(Broken()))
    s = streams.LoaderStream(toy_model.SyntheticSource(0, n=8), 4, keys=("x",))
    assert set(next(s)) == {"x"}
    with pytest.raises(ValueError, match="cannot fill a batch of 16"):
        streams.LoaderStream(toy_model.SyntheticSource(0, n=8), 16)


def test_array_source():
    src = streams.ArraySource({"a": np.arange(6).reshape(3, 2), "b": np.arange(3)})
    assert len(src) == 3 and src[1]["a"].tolist() == [2, 3] and src[2]["b"] == 2
    with pytest.raises(ValueError, match="number of samples"):
        streams.ArraySource({"a": np.zeros(3), "b": np.zeros(4)})
