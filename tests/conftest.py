"""Fixtures: the bundled data, and one real micro sweep and one real two-worker sweep per test
session, shared by the tests that only read what they wrote."""

import pytest

from kinfuse_ray.config import DataConfig, EvalConfig
from kinfuse_ray.data import DataBundle, build_bundle

from .helpers import MICRO, TWO_WORKERS, kinfuse, run_cli


@pytest.fixture(scope="session")
def bundle() -> DataBundle:
    """The bundled data, small: 50 general and 100 domain facts."""
    data = DataConfig(n_general_facts=50, n_domain_facts=100, vocab_size=512)
    return build_bundle(data, EvalConfig(acquisition_probes=None), seed=0)


@pytest.fixture(scope="session")
def two_worker_sweep(tmp_path_factory):
    """One real, uninterrupted two-worker Ray Train sweep (TWO_WORKERS)."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    (tmp_path / "ddp.yaml").write_text(TWO_WORKERS)
    return tmp_path, kinfuse(tmp_path, "sweep", "ddp.yaml")


@pytest.fixture(scope="session")
def micro_sweep(tmp_path_factory):
    """One real, uninterrupted micro sweep, shared by the tests that only read what it wrote."""
    tmp_path = tmp_path_factory.mktemp("micro")
    return tmp_path, run_cli(tmp_path, MICRO, "--progress-every", "5")
