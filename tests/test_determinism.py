"""The same sweep file and seed give the same data stream and, on CPU, the same metrics; a trial
resumed from a mid-run state ends exactly where an uninterrupted one does."""

import copy

import numpy as np

from kinfuse_ray.config import parse_sweep
from kinfuse_ray.data import build_bundle
from kinfuse_ray.mixing import build_stream
from kinfuse_ray.trial import run_trial

SWEEP = {
    "name": "det",
    "seed": 3,
    "ladder": [{"name": "a", "hidden_size": 24, "n_layers": 1, "n_heads": 2}],
    "ratios": [0.5],
    "data": {"n_general_facts": 20, "n_domain_facts": 40, "vocab_size": 512, "seq_len": 64},
    "train": {"schedule": "scratch", "tokens": 20_000, "batch_size": 8},
    "eval": {"every_tokens": 5_000, "acquisition_probes": 40, "val_sequences": 4},
}
TRIAL = {"phase": "infuse", "size": "a", "ratio": 0.5}


def run(sweep, bundle, resume=None):
    reports = []  # the state holds live tensors: keep a copy, as a checkpoint on disk would
    final = run_trial(
        TRIAL, sweep, bundle, lambda m, s: reports.append((m, copy.deepcopy(s))), resume=resume
    )
    return final, reports


def metrics_only(metrics):
    timing = {"tokens_per_s", "first_step_at"}
    return {k: v for k, v in metrics.items() if k not in timing}


def test_same_file_and_seed_give_the_same_stream_and_metrics(tmp_path):
    sweep = parse_sweep({**SWEEP, "output_dir": str(tmp_path)})
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed)
    again = build_bundle(sweep.data, sweep.eval, sweep.seed)
    streams = [
        build_stream(b.corpus, b.general_facts, b.domain_facts, 0.5, 20_000, 64, 0.8, seed=3)
        for b in (bundle, again)
    ]
    assert np.array_equal(streams[0].sequences, streams[1].sequences)
    first, first_reports = run(sweep, bundle)
    second, _ = run(sweep, again)
    assert metrics_only(first) == metrics_only(second)
    assert len(first_reports) == 5  # every 9 steps (4,608 tokens) and at the end

    other = parse_sweep({**SWEEP, "seed": 4, "output_dir": str(tmp_path)})
    assert metrics_only(run(other, bundle)[0]) != metrics_only(first)


def test_a_trial_resumed_from_its_state_ends_where_the_uninterrupted_one_does(tmp_path):
    sweep = parse_sweep({**SWEEP, "output_dir": str(tmp_path)})
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed)
    final, reports = run(sweep, bundle)
    metrics, state = reports[1]  # as if killed after the second evaluation
    assert state is not None and state["tokens"] == metrics["tokens"]
    assert reports[-1][1] is None  # a finished run leaves no state to resume from
    resumed, resumed_reports = run(sweep, bundle, resume=state)
    assert (
        len(resumed_reports) == len(reports) - 2 and resumed["resumed_at_tokens"] == state["tokens"]
    )
    assert metrics_only({**resumed, "resumed_at_tokens": None}) == metrics_only(
        {**final, "resumed_at_tokens": None}
    )
