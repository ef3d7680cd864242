"""Fixtures: the bundled data, and one real micro sweep, one two-worker sweep and one fresh
quickstart per test session, shared by the tests that only read what they wrote. The tiers:
every test carries exactly one of `unit`, `slow`, `full` (pyproject.toml says what each is), and
the run ends with the wall time each tier took."""

import os
import time
from collections import defaultdict

import pytest

from kinfuse_ray.config import DataConfig, EvalConfig
from kinfuse_ray.data import DataBundle, build_bundle

from . import golden
from .helpers import MICRO, TWO_WORKERS, kinfuse, run_cli


@pytest.fixture(scope="session")
def bundle() -> DataBundle:
    """The bundled data, small: 50 general and 100 domain facts."""
    data = DataConfig(n_general_facts=50, n_domain_facts=100, vocab_size=512)
    return build_bundle(data, EvalConfig(acquisition_probes=None), seed=0)


@pytest.fixture(scope="session")
def two_worker_sweep(tmp_path_factory):
    """One real, uninterrupted two-worker Ray Train sweep (TWO_WORKERS)."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    (tmp_path / "ddp.yaml").write_text(TWO_WORKERS)
    return tmp_path, kinfuse(tmp_path, "sweep", "ddp.yaml")


@pytest.fixture(scope="session")
def micro_sweep(tmp_path_factory):
    """One real, uninterrupted micro sweep, shared by the tests that only read what it wrote."""
    tmp_path = tmp_path_factory.mktemp("micro")
    return tmp_path, run_cli(tmp_path, MICRO, "--progress-every", "5")


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory):
    """One fresh quickstart, as a user runs it (tokenizer, tokens and base runs made anew): the
    golden outcomes and the README are checked against it, and the MLflow UI is browsed on it."""
    workdir = tmp_path_factory.mktemp("golden")
    proc = golden.run_quickstart(workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, proc


# Skips that CI accepts: test node id -> the skip message it must carry, each with why. Missing
# packages are never accepted: `make test-all` installs every system package the tests use.
ALLOWED_SKIPS: dict[str, str] = {
    # The local `ray up` test binds Ray's and SSH's default ports, so it cannot run beside
    # another Ray or MLflow instance: `make test-all` runs it alone (marker `host`), but a run
    # of it by hand may find one that an earlier test left shutting down. On a fresh CI machine
    # it runs.
    "tests/test_cluster_up.py::test_the_local_cluster_file_comes_up_runs_a_sweep_and_goes_down": (
        "another SSH server, Ray or MLflow instance runs on this host"
    ),
}


def _accepted(report) -> bool:
    reason = ALLOWED_SKIPS.get(report.nodeid)
    return reason is not None and reason in str(report.longrepr[-1])


def pytest_sessionfinish(session, exitstatus):
    """Under CI a skipped test proves nothing: an unexpected skip fails the run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not os.environ.get("CI") or reporter is None:
        return
    skipped = [r for r in reporter.stats.get("skipped", []) if not _accepted(r)]
    if skipped:
        reporter.write_line(f"CI: {len(skipped)} unexpected skip(s); a skip proves nothing "
                            "(tests/conftest.py ALLOWED_SKIPS lists the accepted ones):", red=True)  # fmt: skip
        for report in skipped:
            reporter.write_line(f"  {report.nodeid}: {report.longrepr[-1]}")
        if exitstatus == 0:
            session.exitstatus = 1


TIERS = ("unit", "slow", "full")
_started = time.monotonic()
_tier_seconds: dict[str, float] = defaultdict(float)
_tier_tests: dict[str, set[str]] = defaultdict(set)


def tiers_of(keywords) -> set[str]:
    return {tier for tier in TIERS if tier in keywords}


# Session fixtures that several tests read: under pytest-xdist each worker builds its own, so
# their readers run on one worker (one group), and the fixture is built once.
SHARED_FIXTURES = ("quickstart", "micro_sweep", "two_worker_sweep")


def xdist_group_of(item) -> str:
    """The shared fixture a test reads, else its module (whose module-scoped fixtures its
    other tests read)."""
    shared = [name for name in SHARED_FIXTURES if name in item.fixturenames]
    return shared[0] if shared else item.module.__name__.rsplit(".", 1)[-1]


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """A test without exactly one tier is an error before anything runs: `-m` selects by tier,
    and a test in none (or two) would run in the wrong one, or in none. Under pytest-xdist
    (`make test` and the full tier run two workers) the tests that start Ray run side by side
    (each sweep starts a local instance of its own on free ports, `address="local"`), grouped
    by `xdist_group_of` (marked here, before xdist groups them; checked after); a test marked
    `host` needs the host's default ports and runs in a pytest of its own."""
    marked = {item.nodeid: tiers_of({m.name for m in item.iter_markers()}) for item in items}
    wrong = [nodeid for nodeid, tiers in marked.items() if len(tiers) != 1]
    if wrong:
        raise pytest.UsageError(
            f"{len(wrong)} test(s) without exactly one tier of {', '.join(TIERS)}: "
            + ", ".join(wrong[:10])
        )
    for item in items:
        if marked[item.nodeid] != {"unit"}:
            item.add_marker(pytest.mark.xdist_group(xdist_group_of(item)))
    result = yield
    grouping = getattr(config.option, "loadgroup", False)  # set in xdist's workers only
    lost = [item.nodeid for item in items if grouping and item.get_closest_marker("xdist_group")
            and "@" not in item.nodeid]  # fmt: skip
    if lost:
        raise pytest.UsageError(
            f"pytest-xdist did not group {len(lost)} test(s) by the fixtures they share "
            f"(e.g. {lost[0]}): each worker would build them; see pyproject.toml's pin of pytest"
        )
    return result


_tier_busy: dict[str, float] = defaultdict(float)
_test_busy: dict[str, tuple[float, float]] = {}  # nodeid -> (wall s, host's busy CPU-s)
_phase_start = pytest.StashKey[float]()


def busy_cpu_seconds() -> float:
    """CPU-seconds this host has spent busy since boot, every process counted (/proc/stat)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, stat.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


_started_busy = busy_cpu_seconds()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report carries the host's busy CPU-seconds during it (Ray's processes
    included), so the summary says how much of the two cores a test used: the headroom for
    running tests side by side."""
    report = yield
    now = busy_cpu_seconds()  # this phase's end is the next one's start
    report.user_properties.append(("busy_cpu_s", now - item.stash[_phase_start]))
    item.stash[_phase_start] = now
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    item.stash[_phase_start] = busy_cpu_seconds()
    return (yield)


def pytest_runtest_logreport(report):
    """Each test's set-up, call and tear-down time and busy CPU-seconds, by tier (in the
    controller under xdist)."""
    busy = dict(report.user_properties).get("busy_cpu_s", 0.0)
    wall, cpu = _test_busy.get(report.nodeid, (0.0, 0.0))
    _test_busy[report.nodeid] = (wall + report.duration, cpu + busy)
    for tier in tiers_of(report.keywords):
        _tier_seconds[tier] += report.duration
        _tier_busy[tier] += busy
        _tier_tests[tier].add(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if _tier_seconds:
        wall, cores = time.monotonic() - _started, os.cpu_count() or 1
        busy = (busy_cpu_seconds() - _started_busy) / (wall * cores)
        terminalreporter.write_line(
            f"wall time {wall:.0f} s, the host's {cores} cores {busy:.0%} busy; test time by tier "
            "(set-up, call and tear-down, shared fixtures in the first test that used them): "
            + "; ".join(
                f"{tier} {len(_tier_tests[tier])} tests {_tier_seconds[tier]:.0f} s"
                f" ({_tier_busy[tier]:.0f} busy CPU-s on the host, counted again for each test "
                "running beside it)"
                for tier in TIERS
                if tier in _tier_seconds
            )
        )
        longest = sorted(_test_busy.items(), key=lambda kv: -kv[1][0])[:10]
        terminalreporter.write_line(
            f"longest tests, with the share of the host's {cores} cores busy while they ran: "
            + "; ".join(
                f"{nodeid.split('::')[-1][:60]} {wall:.0f} s {cpu / (wall * cores):.0%}"
                for nodeid, (wall, cpu) in longest
                if wall > 0
            )
        )
