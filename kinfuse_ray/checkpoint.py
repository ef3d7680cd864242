"""Training state on disk: model and optimizer through PyTorch Distributed Checkpoint (DCP),
the loop's progress (step, tokens, LR schedule, ...) as JSON beside it.

A checkpoint is a folder. Under FSDP2 each rank writes only its own shards (no rank ever holds
the whole state); under DDP a replicated tensor is written once; a single process writes it
all. Loading puts every tensor on the device its parameter lives on, whatever device the
writer had, and reshards when the world size changed. Under a process group both functions are
collective: every rank calls them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from kinfuse_ray.files import PROGRESS, write_json_atomic
from kinfuse_ray.parallel import in_process_group


def save(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: dict,
    *,
    sync: bool = False,
) -> None:
    """Write `model` and `optimizer` (sharded as they are) and `progress` (JSON) to the folder
    `path`. `progress.json` is written last, by rank 0, atomically: a folder that has it is a
    whole checkpoint. The shards are fsynced only with `sync`: a training checkpoint's folder is
    a staging folder whose copy to storage (Ray's) is the durable one, and fsyncing tens of GiB
    per evaluation to a node's root volume costs minutes."""
    path.mkdir(parents=True, exist_ok=True)
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    writer = dcp.FileSystemWriter(path, sync_files=sync)
    with _single_process_is_intended():
        dcp.save(state, storage_writer=writer, no_dist=not in_process_group())
    if not in_process_group() or torch.distributed.get_rank() == 0:
        write_json_atomic(path / PROGRESS, progress)


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load a checkpoint written by `save` into `model` and `optimizer` in place (onto their own
    devices and shards); return its progress."""
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    with _single_process_is_intended():
        dcp.load(state, checkpoint_id=str(path), no_dist=not in_process_group())
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
    )
    return read_progress(path)


def read_progress(path: Path) -> dict:
    return json.loads((path / PROGRESS).read_text())


def is_complete(path: Path) -> bool:
    return (path / PROGRESS).exists()


def save_whole(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: dict,
    *,
    writer: str,
    beside: dict[str, object] | None = None,
) -> None:
    """`save` into a folder of the writer's own beside `path`, then rename it to `path`: a
    folder another process may be reading (a shared base run) appears complete or not at all.
    If another writer got there first, its identical copy stays and this one is dropped.
    `beside`: JSON files to put in the folder with it (file name -> value)."""
    staging = path.with_name(f"{path.name}.writing-{writer}")
    save(staging, model, optimizer, progress, sync=True)  # the store's copy is the durable one
    if in_process_group() and torch.distributed.get_rank() != 0:
        return
    for name, value in (beside or {}).items():
        write_json_atomic(staging / name, value, indent=1)
    try:
        staging.rename(path)
    except OSError:  # already there (a concurrent sweep finished the same run first)
        if not is_complete(path):
            raise
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _single_process_is_intended() -> Iterator[None]:
    """DCP warns whenever it runs without a process group; a one-worker trial means it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        yield
