"""Golden outcomes of the quickstart: what the tests compare against and `scripts/pin_golden.py`
writes, under tests/golden/:

- data.json: digests of what the quickstart trains on (each rung's fact and probe token ids,
  the acquisition sample among them; the corpus tokens; the tokenizer; the mixed stream's first
  rows at a few ratios). Integer work only: exact on every CPU, and a change to data, draws,
  seeds or batch order fails in seconds.
- sweep/<vendor>.json and sweep/<vendor>.answer.txt: the quickstart's outcomes through the real
  CLI on fresh caches and a fresh base store, on the numeric path its sweep file pins
  (`portable`: torch's AVX2 kernels, oneMKL's COMPATIBLE branch), per CPU vendor: that path is
  the same on AMD EPYCs with and without AVX-512 but not on an Intel Xeon (oneMKL's branch
  differs by vendor; kinfuse_ray/provenance.py). Per-trial retention and acquisition (probe
  counts), tokens trained and early stops exactly, validation loss to 1e-9 relative, each
  size's r* and the recommendation to 3 decimals; and the answer it printed, line for line.
  The README shows README_VENDOR's answer.
  Each trial's data-fixed fields (N, D, exposures per fact) are pinned too, so the law can be
  fitted afresh to a vendor's pinned trials on any CPU (`refit`): the fit is the same there
  (scipy, not oneMKL), so a change to the law alone is re-pinned for every vendor on one machine
  (`scripts/pin_golden.py --refit`), and `make test` checks every pinned answer is the law's.

Each records the library versions (and the sweep files the numeric path and the CPUs) it was
pinned with; a version mismatch is reported in one line before any comparison, and any
difference names this machine's CPU beside the pinned ones. A vendor with no pinned file is
compared with nothing: the tests say so (a warning CI prints) and pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
QUICKSTART = REPO / "sweeps" / "quickstart.yaml"
DATA_LIBRARIES = ("numpy", "tokenizers")
SWEEP_LIBRARIES = ("torch", "numpy", "tokenizers", "transformers", "scipy")
STREAM_RATIOS = (0.0, 0.12, 0.6, 0.97)
STREAM_ROWS = 64
# What a trial's data and config fix, the same on every CPU: with its measured outcomes, what the
# law reads.
TRIAL_DATA = ("n_params", "tokens", "exposures_per_fact", "general_exposures_per_fact")
REPIN = "re-pin with `.venv/bin/python scripts/pin_golden.py` if the change is meant"


def versions(names: tuple[str, ...]) -> dict[str, str]:
    return {name: version(name) for name in names}


def _digest(arrays) -> str:
    from kinfuse_ray.base_store import hash_arrays

    digest = hashlib.sha256()
    hash_arrays(digest, [np.asarray(a) for a in arrays])
    return digest.hexdigest()[:16]


def data_digests() -> dict:
    """Digests of the quickstart's data, rung by rung (see the module docstring)."""
    from kinfuse_ray.base_store import facts_digest, rung_bundle
    from kinfuse_ray.config import load_sweep
    from kinfuse_ray.data import build_bundle
    from kinfuse_ray.mixing import Stream
    from kinfuse_ray.tokens import map_tokens

    sweep = load_sweep(QUICKSTART)
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed, sweep.largest_knowledge_load)
    rungs, streams = {}, {}
    for size in sweep.ladder:
        rung = rung_bundle(sweep.rungs[size.name], bundle)
        rungs[size.name] = {
            "facts_and_probes": facts_digest(rung)[:16],
            "acquisition_sample": _digest([rung.acquisition.answers, *rung.acquisition.prompts]),
        }
    rung = rung_bundle(sweep.rungs[sweep.ladder[-1].name], bundle)
    for ratio in STREAM_RATIOS:
        stream = Stream(
            rung.corpus, rung.general_facts, rung.domain_facts, ratio=ratio,
            n_sequences=4096, seq_len=rung.seq_len, fact_share=sweep.data.general_fact_share,
            seed=sweep.seed + (0 if ratio == 0 else 1),
        )  # fmt: skip
        streams[str(ratio)] = _digest(stream.rows(0, STREAM_ROWS))
    return {
        "versions": versions(DATA_LIBRARIES),
        "tokenizer": bundle.tokenizer_digest[:16],
        "corpus": bundle.corpus_digest[:16],
        "corpus_tokens": len(map_tokens(bundle.tokens_path)),
        "rungs": rungs,
        "stream_first_rows": streams,
    }


def run_quickstart(workdir: Path) -> subprocess.CompletedProcess:
    """`kinfuse sweep sweeps/quickstart.yaml` as a user runs it, in `workdir` (its MLflow
    store, outputs and base store there) with fresh tokenizer and token caches."""
    from kinfuse_ray.provenance import PINNING_VARIABLES

    env = {k: v for k, v in os.environ.items() if k not in PINNING_VARIABLES}  # the file pins them
    env["KINFUSE_CACHE"] = str(workdir / "cache")
    return subprocess.run(
        [sys.executable, "-m", "kinfuse_ray.cli", "sweep", str(QUICKSTART),
         "--output-dir", str(workdir / "runs" / "quickstart")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip


def sweep_outcomes(summary: dict) -> dict:
    """What of a quickstart's summary.json is pinned (see the module docstring)."""
    from kinfuse_ray.provenance import cpu_model

    return {
        "versions": versions(SWEEP_LIBRARIES),
        "kernels": re.search(r"CPU kernels (\S+)", summary["provenance"]).group(1),
        "cpus": [cpu_model()],
        **law_outcomes(summary),
        "trials": {
            f"{t['phase']} {t['size']} {t['ratio']}": {
                "retention": t["retention"], "acquisition": t["acquisition"],
                "tokens_trained": t.get("tokens_trained", t["tokens"]),
                "stopped_early": bool(t["stopped_early"]), "val_loss": t["val_loss"],
                **{k: t[k] for k in TRIAL_DATA},
            }
            for t in sorted([*summary["base_runs"], *summary["trials"]],
                            key=lambda t: (t["phase"], t["n_params"], t["ratio"]))
        },
    }  # fmt: skip


def law_outcomes(summary: dict) -> dict:
    """What of a summary.json the analysis decides: each size's r*, the target's, the decision."""
    rec = summary["recommendation"]
    return {
        "collapse_ratio": {s["size"]: round(s["collapse_ratio"], 3) for s in summary["sizes"]},
        "target_collapse_ratio": round(rec["collapse_ratio"], 3),
        "keep_interval": [round(x, 3) for x in rec["decision"]["keep_interval"]],
        "recommended_ratio": round(rec["recommended_ratio"], 3),
    }


def refit(outcomes: dict) -> tuple[dict, str]:
    """`outcomes` with its law's part, and the answer the quickstart prints, from the analysis
    run afresh on its pinned trials: what a quickstart whose training is unchanged gives after a
    change to the detector, the law or how the answer is written."""
    from kinfuse_ray.analysis import summarise
    from kinfuse_ray.config import load_sweep
    from kinfuse_ray.presentation import describe_answer
    from kinfuse_ray.spec import Phase, TrialResult

    trials = []
    for name, pinned in outcomes["trials"].items():
        phase, size, ratio = name.split()
        trials.append(TrialResult.from_dict(pinned | {
            "phase": phase, "size": size, "ratio": float(ratio), "tokens_per_s": 0.0,
            "seconds": 0.0,
        }))  # fmt: skip
    sweep = load_sweep(QUICKSTART)
    summary = summarise(
        [t for t in trials if t.phase is Phase.infuse], name=sweep.name, evals=sweep.eval,
        predict=sweep.predict, seed=sweep.seed, target=sweep.target_point,
        base=[t for t in trials if t.phase is Phase.base],
    )  # fmt: skip
    return outcomes | law_outcomes(summary.to_dict()), describe_answer(summary).rstrip()


def mismatched_versions(pinned: dict, here: dict) -> str | None:
    """One line naming what differs between the pinned environment and this one."""
    differ = [f"{k} {pinned.get(k)} (pinned) vs {v} (here)" for k, v in here.items()
              if pinned.get(k) != v]  # fmt: skip
    return (
        f"golden outcomes were pinned with other libraries: {'; '.join(differ)}" if differ else None
    )


def compare_outcomes(pinned: dict, found: dict) -> list[str]:
    """The differences between pinned and found sweep outcomes, one line each."""
    out = []
    if pinned["kernels"] != found["kernels"]:
        out.append(f"CPU kernels {found['kernels']}, pinned with {pinned['kernels']}")
    missing = set(pinned["trials"]) ^ set(found["trials"])
    out += [f"trial {name}: in one run only" for name in sorted(missing)]
    for name in sorted(set(pinned["trials"]) & set(found["trials"])):
        a, b = pinned["trials"][name], found["trials"][name]
        for field in ("retention", "acquisition", "tokens_trained", "stopped_early", *TRIAL_DATA):
            if a[field] != b[field]:
                out.append(f"trial {name}: {field} {b[field]} (pinned {a[field]})")
        if not np.isclose(a["val_loss"], b["val_loss"], rtol=1e-9, atol=0):
            out.append(f"trial {name}: val_loss {b['val_loss']!r} (pinned {a['val_loss']!r})")
    for field in ("collapse_ratio", "target_collapse_ratio", "keep_interval", "recommended_ratio"):
        if pinned[field] != found[field]:
            out.append(f"{field}: {found[field]} (pinned {pinned[field]})")
    if out:  # which CPUs, beside any difference: a numeric path another vendor does not share
        out.insert(0, f"on {found['cpus'][0]}; pinned on {'; '.join(pinned.get('cpus', ['?']))}")
    return out


class Unpinned(UserWarning):
    """No golden outcomes are pinned for this machine's CPU vendor: nothing to compare with."""


def unpinned(vendor: str) -> Unpinned:
    pinned = ", ".join(pinned_vendors()) or "none"
    return Unpinned(
        f"no golden quickstart outcomes are pinned for {vendor} CPUs (pinned: {pinned}): compared "
        "with nothing; pin them on this machine with `.venv/bin/python scripts/pin_golden.py`"
    )


def read(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def write(name: str, value: dict) -> None:
    (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
    (GOLDEN / name).write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")


def pinned_vendors() -> list[str]:
    return sorted(p.stem for p in (GOLDEN / "sweep").glob("*.json"))


def pinned_sweep(vendor: str) -> tuple[dict, str] | None:
    """The outcomes and the answer text pinned on `vendor`'s CPUs (None: none pinned)."""
    path = GOLDEN / "sweep" / f"{vendor}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()), path.with_suffix(".answer.txt").read_text().rstrip()


def pin_sweep(vendor: str, outcomes: dict, answer: str) -> Path:
    """Write `vendor`'s outcomes and answer text; the JSON file's path."""
    write(f"sweep/{vendor}.json", outcomes)
    (GOLDEN / "sweep" / f"{vendor}.answer.txt").write_text(answer.rstrip() + "\n")
    return GOLDEN / "sweep" / f"{vendor}.json"


README_VENDOR = "AuthenticAMD"  # whose pinned answer README.md's quickstart block shows
