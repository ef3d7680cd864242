"""A size x budget ladder from one sweep file and one command: each budget a sweep of its own
(base runs shared), a general-only reference trial per size and budget, one law over (N, D)
fitted to every trial, recorded in its own folder and MLflow experiment; a resumed ladder keeps
the budgets that had finished."""

import json

import numpy as np
import pytest

from .helpers import MICRO, MICRO_RATIOS, kinfuse, run_cli, runs_of

pytestmark = pytest.mark.full

BUDGETS = (50_000, 100_000)
LADDER = (
    MICRO.replace(f"ratios: {list(MICRO_RATIOS)}", f"ratios: {[0, *MICRO_RATIOS]}")
    .replace("target: {size:", "target: {tokens: 200000, size:")
    .replace("predict:", f"budgets: {list(BUDGETS)}\npredict:")
)


def test_a_size_by_budget_ladder_runs_from_one_file_and_fits_one_law(tmp_path):
    assert "budgets:" in LADDER and "ratios: [0, " in LADDER and "tokens: 200000" in LADDER
    proc = run_cli(tmp_path, LADDER)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    # Each size's base run trains once, for the first budget; the second reuses it.
    assert out.count("base run to train") == 3 and out.count("base run reused") == 3

    summary = json.loads((tmp_path / "runs" / "micro" / "summary.json").read_text())
    sizes = summary["sizes"]
    assert sorted((s["size"], s["tokens"]) for s in sizes) == sorted(
        (f"{name}-d{d}", d) for name in "abc" for d in BUDGETS
    )
    # The reference: each (size, budget)'s plateau is its general-only trial's retention.
    for s in sizes:
        size = s["size"].split("-d")[0]
        zero = [t["retention"] for t in summary["trials"]
                if (t["size"], t["tokens"], t["ratio"]) == (size, s["tokens"], 0.0)]  # fmt: skip
        assert zero and s["plateau"] == pytest.approx(np.mean(zero))
    assert summary["law"]["form"] in ("power_nd", "power_nd_sat")
    assert "g_d" in summary["law"]["params"]
    assert summary["recommendation"]["tokens"] == 200_000
    assert "budget: " in out and "D 50,000 to 100,000 tokens" in out
    assert "tokens  collapse r*" in out  # the size table has a budget column

    for experiment in ("micro", *(f"micro-d{d}" for d in BUDGETS)):
        client, runs = runs_of(tmp_path, experiment)
        parents = [r for r in runs if "kinfuse.output_dir" in r.data.tags]
        assert parents and all(r.info.status == "FINISHED" for r in runs), experiment
    client, runs = runs_of(tmp_path, "micro")
    assert "law.json" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}

    # The ladder's study stands for its budgets' studies when refitting, with its own settings.
    refit = kinfuse(tmp_path, "fit", "--experiment", "micro", "--json")
    assert refit.returncode == 0, refit.stderr[-3000:]
    parameters = json.loads(refit.stdout)["parameters"]
    assert parameters == pytest.approx(summary["law"]["params"], rel=1e-6)
    assert "200,000 tokens" in refit.stderr  # the ladder's target, not a budget's

    law = tmp_path / "runs" / "micro" / "law.json"
    forecast = kinfuse(tmp_path, "predict", "--law-file", str(law), "--n-params", "1e5",
                       "--tokens", "4e5", "--json")  # fmt: skip
    assert forecast.returncode == 0, forecast.stderr[-2000:]
    assert json.loads(forecast.stdout)["tokens"] == 400_000

    again = run_cli(tmp_path, LADDER, "--resume")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("finished before: its trials are kept") == 2
    resumed = json.loads((tmp_path / "runs" / "micro" / "summary.json").read_text())
    assert resumed["law"]["params"] == summary["law"]["params"]
