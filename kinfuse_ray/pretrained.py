"""What a checkpoint rung knew before infusion: its general facts scored once, in the driver,
before any trial, and kept in the base store in place of a base run (the checkpoint is one).

Retention then counts only the facts the checkpoint answered right: a public model knows some
capitals and not others, and forgetting is measured on what it knew. A rung that knows too few
beyond guessing is refused before anything is written.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from kinfuse_ray.base_store import KNOWLEDGE, BaseStore, base_inputs, rung_bundle
from kinfuse_ray.checkpoint import is_complete, read_progress
from kinfuse_ray.config import Rung
from kinfuse_ray.data import DataBundle
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.metrics import chance_corrected, option_scores, probe_credit
from kinfuse_ray.model import load_pretrained
from kinfuse_ray.train import evaluate

KNOWN = "known"  # the base record's list of retention probes the checkpoint answered right


def knowing(bundle: DataBundle, known: list[int]) -> DataBundle:
    """The rung's bundle with retention probed on the facts the checkpoint knew only."""
    return dataclasses.replace(bundle, retention=bundle.retention.take(np.asarray(known, int)))


def score_checkpoint(rung: Rung, bundle: DataBundle) -> dict:
    """The checkpoint's base record: which general facts it answers right, how many it knows
    beyond guessing, and its retention (1 by construction), acquisition and validation loss
    as an infusion trial measures them (`bundle`: the rung's, from `rung_bundle`)."""
    started, driver_threads = time.monotonic(), torch.get_num_threads()
    # The threads a trial evaluates with (summation order), not the driver's, which it gets back.
    torch.set_num_threads(rung.train.cpus_per_trial)
    try:
        model = load_pretrained(rung.size.checkpoint)
        model.eval()
        probes, k = bundle.retention, rung.eval.n_choices
        with torch.no_grad():
            scores = option_scores(model, probes, bundle.eos_id, rung.eval.batch_tokens)
        credit = probe_credit(scores, probes.answers)
        known = np.flatnonzero(credit == 1.0).tolist()
        beyond = chance_corrected(float(credit.mean()), k) * len(credit)
        metrics = dict(zip(KNOWLEDGE, (len(known), beyond, len(credit)), strict=True))
        metrics["retention_all"] = chance_corrected(float(credit.mean()), k)
        if known:
            metrics |= evaluate(model, knowing(bundle, known), rung.eval)
    finally:
        torch.set_num_threads(driver_threads)
    seconds = time.monotonic() - started
    untrained = {"tokens": 0, "exposures_per_fact": 0.0, "tokens_per_s": 0.0,
                 "stopped_early": 0.0, "seconds": seconds}  # fmt: skip
    return {"metrics": {**metrics, **untrained}, KNOWN: known}


def ensure_scored(rungs: list[Rung], store: BaseStore, bundle: DataBundle) -> list[str]:
    """Score every checkpoint rung the store has no record of (the sweep's whole bundle in;
    each rung's share taken here) and keep its record, refusing in one line, with nothing
    kept, a rung that knows fewer than `eval.min_known_facts` facts beyond guessing. Returns
    a line per rung scored."""
    said = []
    for rung in rungs:
        if not rung.size.checkpoint:
            continue
        own = rung_bundle(rung, bundle)
        inputs, n = base_inputs(rung, own), len(own.retention.prompts)
        stored = is_complete(folder := store.folder(inputs))
        record = read_progress(folder) if stored else score_checkpoint(rung, own)
        beyond = record["metrics"]["facts_known_beyond_chance"]
        if beyond < rung.eval.min_known_facts:
            raise KinfuseError(
                f"rung {rung.name}: {rung.size.checkpoint} knows {beyond:.0f} of its {n} general "
                f"facts beyond guessing, fewer than eval.min_known_facts "
                f"{rung.eval.min_known_facts}: its retention would measure luck (give it facts "
                "it knows in data.general_facts)"
            )
        if not stored:
            store.put_scores(inputs, record)
            said.append(f"{rung.name}: scored {rung.size.checkpoint} on its general facts")
    return said
