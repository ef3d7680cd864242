"""What a sweep prints while it runs: a line per finished trial and, every `every` seconds, the
live progress table (`progress.Progress`); and how it takes Ctrl-C (`interrupt`)."""

from __future__ import annotations

import signal
import threading
import time

from ray import tune

from kinfuse_ray.presentation import describe_trial_end, describe_trial_restart
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
            print(self.progress.render(), flush=True)
