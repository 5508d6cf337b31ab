"""edgeml.samples: the one reader and writer of a bundle's samples.npz."""

from __future__ import annotations

import numpy as np
import pytest

from edgeml.errors import BundleError
from edgeml.samples import read_samples, sample_inputs, write_samples


def test_round_trip_keeps_names_and_turns_objects_into_strings(tmp_path):
    path = tmp_path / "samples.npz"
    write_samples(path, {"input": np.arange(6, dtype=np.float32).reshape(3, 2)},
                  {"label": np.array(["a", "b", "a"], dtype=object), "probabilities": np.eye(3, dtype=np.float32)})
    with np.load(path, allow_pickle=False) as raw:  # the on-disk layout devices and old bundles share
        assert sorted(raw.files) == ["input/input", "output/label", "output/probabilities"]
    inputs, outputs = read_samples(path)
    assert inputs["input"].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert outputs["label"].dtype.kind == "U" and outputs["label"].tolist() == ["a", "b", "a"]


def test_an_unreadable_samples_file_is_a_bundle_error(tmp_path):
    path = tmp_path / "samples.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="not a readable samples file"):
        read_samples(path)


def test_inputs_of_a_plain_npz_and_of_a_samples_file():
    plain = {"x": np.zeros(2)}
    assert sample_inputs(plain) == plain
    bundle = {"input/x": np.zeros(2), "output/y": np.ones(2)}
    assert list(sample_inputs(bundle)) == ["x"]


def test_simulator_traffic_from_a_samples_file_holds_only_the_inputs(tmp_path):
    """A bundle's samples.npz used as --traffic: its reference outputs are not fed as inputs."""
    from edgeml.runtime.agent.simulate import load_traffic

    path = tmp_path / "samples.npz"
    write_samples(path, {"input": np.zeros((4, 3), np.float32)}, {"label": np.zeros(4, np.int64)})
    assert list(load_traffic(path)) == ["input"]
