import subprocess
import sys
from pathlib import Path

import pytest

from kinfuse_ray.config import DataConfig, EvalConfig
from kinfuse_ray.data import DataBundle, build_bundle

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def bundle() -> DataBundle:
    """The bundled data, small: 50 general and 100 domain facts."""
    data = DataConfig(n_general_facts=50, n_domain_facts=100, vocab_size=512)
    return build_bundle(data, EvalConfig(acquisition_probes=None), seed=0)


def kinfuse(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The real `kinfuse` command line, run in `cwd` as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "kinfuse_ray.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
