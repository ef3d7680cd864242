"""The code that runs inside Ray: one Tune trial, and under Ray Train each of its workers.

One worker: the training loop runs in the Tune trial's own process, no start-up beyond the
import. More workers or GPUs: a Ray Train TorchTrainer runs the same loop data-parallel and
forwards its rank-0 reports to Tune. Either way every evaluation is reported with a checkpoint,
so a restarted trial resumes from its last one; and a trial leaves its final metrics in
`finished_file`, so one that had finished before its sweep was interrupted reports them again
instead of training.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import ray
from ray import tune

from kinfuse_ray.config import SweepTrials
from kinfuse_ray.files import write_json_atomic
from kinfuse_ray.live_metrics import LiveMetrics
from kinfuse_ray.parallel import Dist
from kinfuse_ray.spec import TrialSpec
from kinfuse_ray.train import Report, Save
from kinfuse_ray.trial import run_trial

MAX_FAILURES = 3  # restarts of a trial (or of a Ray Train worker group) from its last checkpoint


def finished_file(out: Path, trial: TrialSpec) -> Path:
    """Where a trial of the sweep in `out` leaves its final metrics: a resumed sweep replays
    them, never retrains."""
    return out / "trials" / f"{trial.key}.json"


def train_run_dir(trials: SweepTrials, trial: TrialSpec) -> Path:
    """Where a trial's Ray Train run keeps its checkpoints, under a name that stays the same
    however often the trial restarts."""
    return trials.out / "train" / f"{trials.name}-{trial.key}"


def tune_trial(config: dict, *, trials: SweepTrials, bundle_ref: ray.ObjectRef) -> None:
    """Ray Tune function trainable for one trial (`TrialSpec.to_config` under "trial") of the
    sweep whose trials are `trials`. The data bundle is in the object store once, for every
    trial and worker (`bundle_ref`)."""
    trial = TrialSpec.from_config(config)
    rung = trials.rungs[trial.size]
    done = finished_file(trials.out, trial)
    if done.exists():
        tune.report({**json.loads(done.read_text()), "replayed": 1})
        return
    if rung.train.uses_ray_train:
        final = _fit_with_ray_train(trial, trials, bundle_ref)
    else:
        with (
            _resume_folder(tune.get_checkpoint()) as resume,
            LiveMetrics(trials.name, trial) as live,
        ):
            report = _checkpointing(live.wrap(tune.report))
            final = run_trial(
                trial, rung=rung, out=trials.out, bundle=ray.get(bundle_ref), report=report,
                resume=resume,
            )  # fmt: skip
    done.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(done, {k: v for k, v in final.items() if isinstance(v, int | float)})
    # Its metrics are kept: the trial's checkpoints (GBs each for large rungs) are not needed.
    for folder in train_run_dir(trials, trial).glob("checkpoint_*/"):
        shutil.rmtree(folder, ignore_errors=True)


def placement(workers: int, per_worker: dict[str, float], nodes: list[dict[str, float]]) -> str:
    """STRICT_PACK when one of the cluster's `nodes` (their resources) holds every worker of the
    trial: split over nodes, its workers talk over TCP, not the node's GPU interconnect, and
    Ray's default PACK only prefers one node. Else PACK: the trial spans nodes (a ladder wider
    than a node, or an autoscaling cluster whose GPU nodes have not started yet)."""
    need = {name: amount * workers for name, amount in per_worker.items()}
    one_node = any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes)
    return "STRICT_PACK" if one_node else "PACK"


def _alive_node_resources() -> list[dict[str, float]]:
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def _fit_with_ray_train(trial: TrialSpec, trials: SweepTrials, bundle_ref: ray.ObjectRef) -> dict:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    train = trials.rungs[trial.size].train
    per_worker = {"CPU": train.cpus_per_trial, **({"GPU": 1} if train.use_gpu else {})}
    folder = train_run_dir(trials, trial)
    # A stable run name in a stable place: a run restarted by Tune or by a resumed sweep finds
    # its own last checkpoint there (Train V2 restores it by itself; passing one is refused).
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"trial": trial, "trials": trials, "bundle_ref": bundle_ref},
        scaling_config=ScalingConfig(
            num_workers=train.workers,
            use_gpu=train.use_gpu,
            resources_per_worker=per_worker,
            placement_strategy=placement(train.workers, per_worker, _alive_node_resources()),
        ),
        run_config=RunConfig(
            name=folder.name,
            storage_path=str(folder.parent),
            callbacks=[TuneReportCallback()],
            failure_config=FailureConfig(max_failures=MAX_FAILURES),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    return trainer.fit().metrics


def _train_worker(config: dict) -> None:
    """One Ray Train worker: the same trial code as a single process, on its data-parallel
    share of the trial (DDP or FSDP2 over the process group Ray Train set up: gloo on CPUs,
    NCCL on GPUs)."""
    import ray.train
    import torch
    from ray.train.torch import get_device

    context = ray.train.get_context()
    dist = Dist(context.get_world_rank(), context.get_world_size(), get_device())
    trial, trials = config["trial"], config["trials"]
    # Distinct Ray nodes among the workers (by node ID: nodes on one host share an IP).
    nodes = [None] * dist.world
    torch.distributed.all_gather_object(nodes, ray.get_runtime_context().get_node_id())
    placement = {"n_nodes": len(set(nodes))}

    def with_placement(report: Report) -> Report:
        return lambda metrics, save: report({**metrics, **placement}, save)

    with contextlib.ExitStack() as stack:
        resume = stack.enter_context(_resume_folder(ray.train.get_checkpoint()))
        reporter = ray.train.report
        if dist.rank == 0:  # one worker publishes the trial's live metrics
            reporter = stack.enter_context(LiveMetrics(trials.name, trial)).wrap(reporter)
        run_trial(
            trial, rung=trials.rungs[trial.size], out=trials.out,
            bundle=ray.get(config["bundle_ref"]), report=with_placement(_checkpointing(reporter)),
            dist=dist, resume=resume,
        )  # fmt: skip


def _checkpointing(report: Callable[..., None]) -> Report:
    """`train`'s reporter for a Ray `report`: every training state goes out as a checkpoint
    (each rank writes its part into a folder of its own; Ray merges them in storage), so a
    trial restarted after a crash resumes from its last evaluation (`_resume_folder`)."""

    def report_with_checkpoint(metrics: dict, save: Save | None) -> None:
        if save is None:
            report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save(Path(tmp))
            report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    return report_with_checkpoint


@contextlib.contextmanager
def _resume_folder(saved: tune.Checkpoint | None) -> Iterator[Path | None]:
    """The folder of a trial's last checkpoint (None: start from the beginning), while open."""
    if saved is None:
        yield None
        return
    with saved.as_directory() as path:
        yield Path(path)
