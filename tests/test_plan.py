"""`kinfuse plan`: the GPU ladder fits the hardware its file names, a rung that cannot fit is
refused with one line that says what to change, and the costs follow from the file."""

import re

import pytest

from kinfuse_ray.config import ModelSize, load_sweep
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.plan import (
    TIGHT_ABOVE,
    budget_exponent_halfwidth,
    expected_bisection_steps,
    plan_budget_exponent,
    plan_sweep,
    training_memory,
)

from .helpers import REPO, kinfuse

pytestmark = pytest.mark.unit

GPU_LADDER = REPO / "sweeps" / "gpu_ladder.yaml"


def plan_of(sweep, vocab_size, mfu=0.4):
    """The plan `kinfuse plan` prints for `sweep`."""
    return plan_sweep(
        sweep.name, list(sweep.rungs.values()), vocab_size, ratios=sweep.ratios,
        precision=sweep.search.precision, budgets=sweep.budgets or [sweep.train.tokens], mfu=mfu,
    )  # fmt: skip


def test_the_gpu_ladder_plan_fits_the_cluster_files_gpus(tmp_path):
    proc = kinfuse(tmp_path, "plan", str(GPU_LADDER))
    assert proc.returncode == 0, proc.stderr
    names = [size.name for size in load_sweep(GPU_LADDER).ladder]
    rows = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert [row for row in rows if row in names] == names  # every rung planned, none refused
    assert "bisection (expected)" in proc.stdout and "GPU-hours" in proc.stdout
    assert "(bracket hi/lo - 1 up to " in proc.stdout and "(search.precision)" in proc.stdout
    assert "tight:" not in proc.stdout  # every rung leaves the margin for what is not modelled


def test_a_rung_close_to_the_limit_is_flagged_for_measuring(tmp_path):
    proc = kinfuse(tmp_path, "plan", str(GPU_LADDER), "--set", "train.micro_batch_size=8")
    assert proc.returncode == 0, proc.stderr
    tight = [line for line in proc.stdout.splitlines() if line.startswith("tight:")]
    assert tight and all("--memory-rung" in line for line in tight)
    plan = plan_of(load_sweep(GPU_LADDER, ["train.micro_batch_size=8"]), 32_000)
    flagged = {r.name for r in plan.rungs if r.usable_share > TIGHT_ABOVE}
    assert {line.split()[1] for line in tight} == flagged


def test_a_rung_that_cannot_fit_is_refused_with_what_to_change(tmp_path):
    text = GPU_LADDER.read_text()
    unsharded = text.replace("  parallelism: fsdp ", "  parallelism: ddp ").replace(
        ",\n     activation_checkpointing: true}", "}"
    )
    assert unsharded.count("parallelism: ddp") == 1 and "activation_checkpointing" not in unsharded
    (tmp_path / "ddp.yaml").write_text(unsharded)
    proc = kinfuse(tmp_path, "plan", "ddp.yaml")
    assert proc.returncode == 2
    assert proc.stdout == ""
    line = proc.stderr.strip()
    assert "\n" not in line and "l2.6b" in line and "parallelism: fsdp" in line


def test_sharding_and_checkpointing_shrink_what_they_should():
    size = ModelSize(name="m", hidden_size=2048, n_layers=24, n_heads=16)
    ddp = training_memory(size, 32_000, 2048, 4, workers=8)
    fsdp = training_memory(size, 32_000, 2048, 4, workers=8, parallelism="fsdp")
    ac = training_memory(
        size, 32_000, 2048, 4, workers=8, parallelism="fsdp", activation_checkpointing=True
    )
    assert fsdp.optimizer == pytest.approx(ddp.optimizer / 8)
    assert fsdp.activations == ddp.activations
    assert ac.activations < fsdp.activations / 4
    assert ac.optimizer == fsdp.optimizer
    # A one-GPU FSDP2 trial (a group of one under Ray Train) holds whole states and gathers
    # bf16 layers, where a CPU process without a group trains the plain model.
    one_gpu = training_memory(size, 32_000, 2048, 4, parallelism="fsdp")
    one_cpu = training_memory(size, 32_000, 2048, 4, parallelism="fsdp", gpu=False)
    assert one_gpu.optimizer == one_cpu.optimizer == 8 * fsdp.optimizer
    assert one_gpu.weights < one_cpu.weights + 2 * size.param_count(32_000).total


def test_bisection_steps_narrow_the_widest_bracket_to_the_precision():
    # 0.2 -> 0.4 is a factor 2; halving log(2) until <= log(1.1): 2^-3 * 0.693 = 0.087 <= 0.095
    assert expected_bisection_steps([0.1, 0.2, 0.4], 0.1) == 3
    assert expected_bisection_steps([0.5], 0.1) == 0


def test_gpu_hours_scale_with_tokens_and_mfu():
    sweep = load_sweep(GPU_LADDER)
    at_40 = plan_of(sweep, 32_000, mfu=0.4)
    at_20 = plan_of(sweep, 32_000, mfu=0.2)
    assert at_20.grid_gpu_hours == pytest.approx(2 * at_40.grid_gpu_hours)
    doubled = sweep.model_copy(
        update={"train": sweep.train.model_copy(update={"tokens": 2 * sweep.train.tokens})}
    )
    rung = plan_of(doubled, 32_000).rungs[0]
    assert rung.trial_gpu_hours == pytest.approx(2 * at_40.rungs[0].trial_gpu_hours)


def test_an_unknown_gpu_name_is_a_config_error(tmp_path):
    proc = kinfuse(tmp_path, "plan", str(GPU_LADDER), "--set", "train.gpu=H900")
    assert proc.returncode == 2
    assert "train.gpu" in proc.stderr and "unknown gpu 'H900'" in proc.stderr
    with pytest.raises(KinfuseError):
        load_sweep(GPU_LADDER, ["train.gpu=H900"])


def test_the_budget_exponent_plan_is_the_spread_of_a_least_squares_fit():
    """The arithmetic's half-width against 4,000 simulated ladders: logit r* on log N and log D
    over 4 sizes x 3 budgets x 2 seeds, each point 0.3 logits off the law; the fitted D
    exponent's 90% spread is what `budget_exponent_halfwidth` says."""
    import numpy as np

    sizes, budgets, seeds, scatter = [2.5e4, 5.5e4, 1e5, 2.2e5], [5e4, 1e5, 2e5], 2, 0.3
    grid = np.array([(n, d) for n in sizes for d in budgets for _ in range(seeds)])
    X = np.c_[np.ones(len(grid)), np.log(grid)]
    rng = np.random.default_rng(0)
    noise = rng.normal(0, scatter, (4000, len(grid)))
    g = np.linalg.lstsq(X, (1.0 + 0.8 * X[:, 1] + 0.6 * X[:, 2] + noise).T, rcond=None)[0][2]
    measured = (np.quantile(g, 0.95) - np.quantile(g, 0.05)) / 2
    assert budget_exponent_halfwidth(4, budgets, seeds, scatter) == pytest.approx(
        measured, rel=0.06
    )


def test_a_budget_ladder_plan_says_what_pins_the_d_exponent(tmp_path):
    ladder = REPO / "sweeps" / "budget_continued.yaml"
    proc = kinfuse(
        tmp_path, "plan", str(ladder), "--scatter", "0.3", "--d-precision", "0.1", "--no-probe"
    )  # the probe of this CPU is not what this tests
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.splitlines()[-1]
    assert line.startswith("D exponent: +/-") and "+/-0.1 needs" in line
    sweep = load_sweep(ladder)
    budget = plan_budget_exponent(len(sweep.ladder), sweep.budgets, 0.1, 0.3)
    assert budget.halfwidth > 0.1 and budget.seeds_needed > 1 and budget.budgets_needed > 3
    assert budget_exponent_halfwidth(4, [5e4, 1e5, 2e5], budget.seeds_needed, 0.3) <= 0.1
    assert budget_exponent_halfwidth(4, [5e4, 1e5, 2e5], budget.seeds_needed - 1, 0.3) > 0.1
    # every budget's trials are counted
    assert plan_of(sweep, 512).grid_trials == len(sweep.ladder) * len(sweep.ratios) * 3


def synthetic_law(scale: float = 1.0):
    """A law fitted (for real, few draws) to curves of the quickstart's sizes (x `scale`) whose
    collapse follows r* = sigmoid(1.3 + 0.9 ln(N / 1e5 / scale)) with scatter and trial noise."""
    import math

    import numpy as np
    from scipy.special import expit, logit

    from kinfuse_ray.law import InfusionLaw, size_curve

    rng = np.random.default_rng(0)
    curves = []
    for n, scatter in zip((25_248, 55_536, 100_672, 221_664, 395_904), (0.2, -0.15, 0.1, -0.1, 0.05),
                          strict=True):  # fmt: skip
        z = 1.3 + 0.9 * math.log(n / 1e5) + scatter
        rows = [(r, 0.95 * float(expit(1.5 * (z - logit(r)))) + rng.normal(0, 0.03),
                 float(expit(3 * (logit(r) - 0.5)))) for r in (0.12, 0.3, 0.6, 0.83, 0.9, 0.97)]  # fmt: skip
        curves.append(size_curve(f"n{n}", n * scale, 100_000, rows, 0.95))
    return InfusionLaw.fit(curves, form="power_n", n_bootstrap=100)


def test_the_decision_search_is_costed_on_ladders_drawn_from_a_previous_law(tmp_path):
    """`--simulate-decision` replays the decision search on ladders drawn from a law.json: its
    trials within the sweep's budget (a third of the grid's) and at least the 2 per size that
    bracket a collapse; a law whose collapses lie past the grid is moved into it, and says so;
    without a law it is one line's refusal."""
    synthetic_law().save(tmp_path / "law.json")
    synthetic_law(scale=1e-3).save(tmp_path / "far.json")  # a family 1000x smaller
    quickstart = str(REPO / "sweeps" / "quickstart.yaml")
    args = (
        "plan",
        quickstart,
        "--no-probe",
        "--set",
        "predict.bootstrap=100",
        "--simulate-decision",
        "2",
    )
    found = {}
    for law in ("law.json", "far.json"):
        proc = kinfuse(tmp_path, *args, "--law-file", law)
        assert proc.returncode == 0, proc.stderr[-2000:]
        found[law] = proc.stdout.splitlines()[-1]
    pattern = r"decision \(simulated on 2 ladders drawn from {}(.*)\): (\d+)-(\d+) infusion trials \(grid 45\), (\d+)%-(\d+)%"
    near = re.fullmatch(
        pattern.format("law.json") + " of the grid's trial-tokens", found["law.json"]
    )
    assert near and not near.group(1), found["law.json"]
    assert 2 * 5 <= int(near.group(2)) <= int(near.group(3)) <= 15 and int(near.group(5)) <= 34
    far = re.match(pattern.format("far.json"), found["far.json"])
    assert far and "r* moved -" in far.group(1), found["far.json"]
    refused = kinfuse(tmp_path, *args)
    assert refused.returncode != 0 and "--law-file" in refused.stderr.strip().splitlines()[-1]
    assert "Traceback" not in refused.stderr


def test_a_gpu_ladder_in_two_numeric_regimes_is_refused_unless_asked_for(tmp_path):
    """DDP (fp32 weights under bf16 autocast) and FSDP2 (bf16 weights) on the rungs of one GPU
    ladder: the law would read the precision as size. Refused in one line naming both groups;
    allowed with train.mixed_regimes; the shipped GPU ladder is one regime."""
    assert len({r.train.parallelism for r in load_sweep(GPU_LADDER).rungs.values()}) == 1
    mixed = ["ladder=[{name: a, hidden_size: 768, n_layers: 12, n_heads: 12, parallelism: ddp},"
             " {name: b, hidden_size: 1024, n_layers: 24, n_heads: 16}]"]  # fmt: skip
    proc = kinfuse(tmp_path, "plan", str(GPU_LADDER), "--set", mixed[0])
    assert proc.returncode == 2 and proc.stdout == ""
    line = proc.stderr.strip()
    assert "\n" not in line and "two numeric regimes on GPUs (ddp: a; fsdp: b)" in line
    assert "train.mixed_regimes: true" in line
    allowed = kinfuse(tmp_path, "plan", str(GPU_LADDER), "--set", mixed[0],
                      "--set", "train.mixed_regimes=true")  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    on_cpu = load_sweep(GPU_LADDER, [*mixed, "train.use_gpu=false"])  # one regime on CPUs: fp32
    assert {r.train.parallelism for r in on_cpu.rungs.values()} == {"ddp", "fsdp"}


def test_the_docs_generated_blocks_say_what_their_commands_print_now():
    """A block no sweep produces (the README's `kinfuse plan sweeps/gpu_ladder.yaml`) drifted
    once: memory twice what the command printed after the micro-batch changed. The check reruns
    each and fails on any difference; it fails on a block edited by hand too."""
    import subprocess
    import sys

    script = REPO / "scripts" / "doc_blocks.py"
    checked = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True,
                             cwd=REPO, timeout=300)  # fmt: skip
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
    assert "every checked block holds" in checked.stdout


def test_a_cpu_sweep_is_costed_from_its_rungs_loops_timed_here(tmp_path):
    """A local CPU sweep's plan ends with its training time on this machine: each rung's real
    loop timed for one evaluation interval, scaled to its trials and base run, over the trials
    that run at once; a larger rung costs more per token (here about 5x the work of the smaller,
    so a busy machine's noise cannot swap them). --no-probe skips it."""
    from kinfuse_ray.config import parse_sweep
    from kinfuse_ray.plan import cpu_seconds

    from .helpers import micro_sweep, micro_sweep_yaml

    two = [{"name": "a", "hidden_size": 24, "n_layers": 1, "n_heads": 2},
           {"name": "b", "hidden_size": 128, "n_layers": 2, "n_heads": 4}]  # fmt: skip
    (tmp_path / "cpu.yaml").write_text(micro_sweep_yaml(ladder=two, ratios=[0.3, 0.6, 0.9]))
    proc = kinfuse(tmp_path, "plan", "cpu.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    found = re.search(r"about ([\d.]+) (s|min) of training for 6 infusion trials and 2 base runs, "
                      r"\d+ at a time.*per token: a (\d+), b (\d+)\)$", line)  # fmt: skip
    assert found, line
    assert float(found[1]) > 0 and int(found[4]) > int(found[3])
    assert "time on this machine" not in kinfuse(tmp_path, "plan", "cpu.yaml", "--no-probe").stdout
    # The arithmetic: 3 trials of 15,000 tokens and a base run of 30,000 per rung, two at once.
    sweep = parse_sweep(micro_sweep(ladder=two, ratios=[0.3, 0.6, 0.9]))
    rungs = list(sweep.rungs.values())
    time = cpu_seconds(rungs, {"a": 1e-5, "b": 4e-5}, 3, [15_000], slots=2)
    assert (time.trials, time.base_runs) == (6, 2)
    assert time.seconds == pytest.approx((3 * 15_000 + 30_000) * 5e-5 / 2)
