"""A base run is reused only where it would come out the same, and the store says what it holds."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from kinfuse_ray.base_store import (
    EVAL_FIELDS,
    KEY_FILE,
    NOT_IN_KEY,
    SHAPE_FIELDS,
    TRAIN_FIELDS,
    BaseStore,
    key_inputs,
    key_of,
    rung_bundle,
)
from kinfuse_ray.config import EvalConfig, ModelSize, SweepConfig, TrainConfig
from kinfuse_ray.files import PROGRESS
from kinfuse_ray.tokens import content_digest
from tests.helpers import kinfuse

HERE = {"torch": "2.13.0+cpu", "cpu": "AVX512", "vendor": "AuthenticAMD"}


def sweep(tmp_path, **train) -> SweepConfig:
    return SweepConfig.model_validate({
        "name": "key", "ladder": [{"name": "a", "hidden_size": 24, "n_layers": 1, "n_heads": 2}],
        "ratios": [0.5], "output_dir": str(tmp_path / "runs" / "key"),
        "data": {"n_general_facts": 50, "n_domain_facts": 100, "vocab_size": 512},
        "train": train,
    })  # fmt: skip


@pytest.mark.unit
def test_every_setting_is_in_the_key_or_named_as_not_deciding_a_base_run():
    """A new setting must be placed: in the key, or out of it with a reason."""
    for section, model, keyed in (
        ("shape", ModelSize, SHAPE_FIELDS),
        ("train", TrainConfig, TRAIN_FIELDS),
        ("eval", EvalConfig, EVAL_FIELDS),
    ):
        placed = set(keyed) | set(NOT_IN_KEY[section])
        assert set(model.model_fields) == placed, section
        assert not set(keyed) & set(NOT_IN_KEY[section]), section


@pytest.mark.unit
def test_another_torch_kernels_cpu_vendor_or_training_version_is_another_key(
    tmp_path, bundle, monkeypatch
):
    s = sweep(tmp_path)
    rung = rung_bundle(s.rungs["a"], bundle)
    here = key_inputs(s.rungs["a"], rung, HERE)
    assert key_of(key_inputs(s.rungs["a"], rung, dict(HERE))) == key_of(here)  # same run, same key
    avx2 = key_inputs(s.rungs["a"], rung, {**HERE, "cpu": "AVX2"})
    newer = key_inputs(s.rungs["a"], rung, {**HERE, "torch": "2.14.0+cpu"})
    # oneMKL's path differs by CPU vendor on every branch: a run of the other vendor's is another.
    intel = key_inputs(s.rungs["a"], rung, {**HERE, "vendor": "GenuineIntel"})
    # Settings that only infusion trials or the analysis read leave the key alone.
    later = sweep(tmp_path, tokens=123_456)
    assert key_inputs(later.rungs["a"], rung_bundle(later.rungs["a"], bundle), HERE) == here
    monkeypatch.setattr("kinfuse_ray.base_store.TRAINING_VERSION", "test")
    retrained = key_inputs(s.rungs["a"], rung, HERE)
    assert len({key_of(k) for k in (here, avx2, newer, intel, retrained)}) == 5
    # On GPUs the key names the GPU the sweep declares, not the driver's CPU kernels.
    gpu = sweep(tmp_path, use_gpu=True, gpu="H100-SXM")
    on_gpu = key_inputs(gpu.rungs["a"], rung_bundle(gpu.rungs["a"], bundle), HERE)
    assert on_gpu["kernels"] == "gpu:H100-SXM"
    assert (
        key_inputs(gpu.rungs["a"], rung_bundle(gpu.rungs["a"], bundle), {**HERE, "cpu": "AVX2"})
        == on_gpu
    )


@pytest.mark.unit
def test_a_corpus_rewritten_under_the_same_name_is_another_key(tmp_path, bundle, monkeypatch):
    monkeypatch.setenv("KINFUSE_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.npy"
    np.save(corpus, np.arange(1000, dtype=np.int32))
    first = content_digest(corpus)
    assert content_digest(corpus) == first  # cached: read once
    np.save(corpus, np.arange(1000, dtype=np.int32)[::-1].copy())
    assert content_digest(corpus) != first
    s = sweep(tmp_path)
    rung = rung_bundle(s.rungs["a"], bundle)
    other = dataclasses.replace(rung, corpus_digest=content_digest(corpus))
    assert key_of(key_inputs(s.rungs["a"], rung, HERE)) != key_of(
        key_inputs(s.rungs["a"], other, HERE)
    )


def stored_run(store: BaseStore, inputs: dict) -> None:
    folder = store.folder(inputs)
    folder.mkdir(parents=True)
    (folder / KEY_FILE).write_text(json.dumps(inputs))
    metrics = {"retention": 0.9, "acquisition": 0.0, "val_loss": 5.0, "tokens": 1000,
               "exposures_per_fact": 0.0, "tokens_per_s": 1.0, "stopped_early": 0}  # fmt: skip
    (folder / PROGRESS).write_text(json.dumps({"metrics": metrics}))


@pytest.mark.unit
def test_a_run_made_with_other_kernels_is_not_reused_and_the_sweep_is_told_why(tmp_path, bundle):
    s = sweep(tmp_path)
    rung = rung_bundle(s.rungs["a"], bundle)
    store = BaseStore.beside(s.out)
    stored_run(store, key_inputs(s.rungs["a"], rung, {**HERE, "cpu": "AVX2"}))
    wanted = key_inputs(s.rungs["a"], rung, HERE)
    assert store.stored(s.rungs["a"], wanted) is None
    assert store.why_not(wanted) == (
        "the closest stored run (1 of this shape) differs in kernels cpu:AVX2 -> cpu:AVX512"
    )
    stored_run(store, wanted)
    assert store.stored(s.rungs["a"], wanted).retention == 0.9


@pytest.mark.full
def test_kinfuse_store_lists_runs_and_deletes_those_no_sweep_file_uses(tmp_path, bundle):
    """The sweep file pins AVX2 kernels: its run is the AVX2 one, whatever kernels the `kinfuse
    store` process's own torch picked; runs of another torch or other kernels are not used."""
    s = sweep(tmp_path, cpu_kernels="avx2")
    rung = rung_bundle(s.rungs["a"], bundle)
    store = BaseStore.beside(s.out)
    from kinfuse_ray.provenance import kernels

    used = key_inputs(s.rungs["a"], rung, {**kernels(), "cpu": "AVX2"})
    stale = key_inputs(s.rungs["a"], rung, {**kernels(), "cpu": "AVX2", "torch": "1.0"})
    other_kernels = key_inputs(s.rungs["a"], rung, {**kernels(), "cpu": "AVX512"})
    for inputs in (used, stale, other_kernels):
        stored_run(store, inputs)
    (tmp_path / "key.yaml").write_text(json.dumps(s.model_dump(mode="json")))
    listed = kinfuse(tmp_path, "store", "--root", "runs/.kinfuse-base", "--keep", "key.yaml")
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[2:-1]}
    assert rows[key_of(used)].endswith("yes") and rows[key_of(stale)].endswith("no")
    assert rows[key_of(other_kernels)].endswith("no")
    assert " 1.0 " in rows[key_of(stale)]  # its torch version, read from key.json
    assert "2 not used by these sweep files" in listed.stdout
    deleted = kinfuse(tmp_path, "store", "--root", "runs/.kinfuse-base", "--keep", "key.yaml",
                      "--delete")  # fmt: skip
    assert deleted.returncode == 0, deleted.stderr[-2000:]
    assert [e.key for e in store.entries()] == [key_of(used)]
    refused = kinfuse(tmp_path, "store", "--root", "runs/.kinfuse-base", "--delete")
    assert refused.returncode == 2 and "--delete needs --keep" in refused.stderr


@pytest.mark.unit
def test_listing_the_store_loads_neither_ray_nor_torch(tmp_path):
    """`kinfuse store` lists a folder in about a second: Ray and torch (seconds to import, a
    minute or more cold) load only when --keep asks for the keys of sweep files."""
    (tmp_path / "store").mkdir()
    code = ("import sys; from kinfuse_ray import cli; cli.main(['store', '--root', sys.argv[1]]); "
            "print('loaded:', [m for m in ('ray', 'torch', 'mlflow') if m in sys.modules])")  # fmt: skip
    listed = subprocess.run([sys.executable, "-c", code, str(tmp_path / "store")],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "loaded: []" in listed.stdout
