"""What a sweep prints while it runs: its status lines (`say`), a line per finished trial and,
every `every` seconds, the live progress table (`progress.Progress`); and how it takes Ctrl-C
(`interrupt`)."""

from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path

from ray import tune

from kinfuse_ray.collapse import CollapsePoint
from kinfuse_ray.progress import Progress
from kinfuse_ray.spec import TrialSpec

# Set by Ctrl-C or SIGTERM in the driver. The KeyboardInterrupt they raise can be swallowed inside
# a blocking Ray call (seen: a sweep ran to its end, exit 0, after a Ctrl-C), so the flag stays
# and the next Tune step raises it again (`ConsoleProgress.on_step_begin`).
INTERRUPTED = threading.Event()


def interrupt(signum: int, frame) -> None:
    """The driver's handler for Ctrl-C and SIGTERM (`sweep.run_sweep` installs it)."""
    INTERRUPTED.set()
    raise KeyboardInterrupt(signal.Signals(signum).name)


class ConsoleProgress(tune.Callback):
    def __init__(self, progress: Progress, every: float = 30.0):
        self.progress, self.every = progress, every
        self.printed_at = time.monotonic()
        self.caught_up = False  # with trials a resumed Tune experiment had finished

    def __getstate__(self) -> dict:  # saved by Tune with the experiment
        return {**self.__dict__, "caught_up": False}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.printed_at = time.monotonic()

    def on_step_begin(self, iteration, trials, **info):
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt("interrupted")
        if self.caught_up:
            return
        self.caught_up = True
        for trial in trials:  # finished before an interruption: restored as they were
            result = trial.last_result or {}
            if trial.status == "TERMINATED" and "retention" in result:
                spec = TrialSpec.of(trial)
                self.progress.finish(spec, result.get("time_total_s", 0.0))

    def on_trial_start(self, iteration, trials, trial, **info):
        self.progress.start(TrialSpec.of(trial))

    def on_trial_recover(self, iteration, trials, trial, **info):
        print(describe_trial_restart(TrialSpec.of(trial)), flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        spec, result = TrialSpec.of(trial), trial.last_result or {}
        self.progress.finish(spec, result.get("time_total_s", 0.0))
        print(describe_trial_end(spec, result), flush=True)

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self.printed_at >= self.every:
            self.printed_at = time.monotonic()
            print(describe_progress(self.progress), flush=True)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def describe_progress(progress: Progress) -> str:
    """The live progress table a sweep prints now and then."""
    elapsed, left, sizes = progress.elapsed(), progress.remaining_seconds(), progress.sizes()
    # The fit and records after the last trial (seconds to a minute) are not in the estimate.
    eta = (
        "estimating time left"
        if left is None
        else f"about {duration(left)} of training left, then the fit"
    )
    lines = [f"progress: {duration(elapsed)} elapsed, {eta}"]
    width = max(len(s.size) for s in sizes)
    for s in sizes:
        if s.base is not None:
            lines.append(f"  {s.size:<{width}}  base run {s.base}")
            continue
        lines.append(
            f"  {s.size:<{width}}  {s.done} done, {s.running} running, {s.pending} pending;"
            f" {_bracket(s.collapse)}"
        )
    return "\n".join(lines)


def _bracket(found: CollapsePoint | None) -> str:
    if found is None:
        return "r* not yet bracketed"
    if not found.found:
        return f"{found.outcome.value} so far"
    lo, hi = found.bracket
    return f"r* {found.ratio:.3f} in [{lo:g}, {hi:g}]"


def describe_trial_end(trial: TrialSpec, result: dict) -> str:
    """The line a sweep prints as a trial ends."""
    seconds = result.get("time_total_s", 0.0)
    ended = "recorded earlier" if result.get("replayed") else f"{seconds:.0f} s"
    stopped = "stopped early  " if result.get("stopped_early") else ""
    return (
        f"  {trial.phase:<6} {trial.size:<10} r={trial.ratio:<5g} "
        f"retention {result.get('retention', math.nan):.2f}  "
        f"acquisition {result.get('acquisition', math.nan):.2f}  {stopped}({ended})"
    )


def describe_trial_restart(trial: TrialSpec) -> str:
    return f"  trial {trial.key} failed; restarting from its last checkpoint"


def say(line: str) -> None:
    """A sweep's status line, as it happens."""
    print(f"kinfuse: {line}", flush=True)


def describe_start(resume: bool, sizes: int, strategy: str, ratios: int, out: Path) -> str:
    resuming = "resuming, " if resume else ""
    return f"{resuming}{sizes} sizes, {strategy} search over {ratios} ratios; output in {out}"


def describe_base_to_train(size: str, why: str) -> str:
    return f"{size}: base run to train: {why}"


def describe_base_reused(size: str, key: str, knowledge: dict[str, float] | None = None) -> str:
    """A stored base run taken, or a checkpoint's scores (`knowledge`: what it knew)."""
    if knowledge is None:
        return f"{size}: base run reused from the shared store ({key})"
    probed = knowledge.get("general_facts_probed")
    return (
        f"{size}: its checkpoint knew {knowledge.get('known_facts', 0):.0f}"
        + (f" of {probed:.0f}" if probed else "")
        + f" general facts ({knowledge.get('facts_known_beyond_chance', 0):.0f} beyond guessing;"
        f" scores from the shared store, {key}): retention counts those"
    )


def describe_budget_part(name: str, tokens: int, finished: bool) -> str:
    """A budget of a size x budget ladder, as the ladder starts it (or keeps it, `finished`)."""
    if finished:
        return f"{name} finished before: its trials are kept"
    return f"{tokens:,} tokens per trial: sweep {name}"
