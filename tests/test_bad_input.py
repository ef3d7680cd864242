"""The catalogue of bad input, each through the real `kinfuse sweep` entry point: one line
naming the field, file or line, exit 2, no traceback, and nothing left behind (no MLflow store, no
outputs). Every case runs in-process through `cli.main` (seconds); a few also as real
subprocesses, which prove the exit code and the absence of a traceback end to end."""

import json

import pytest

from kinfuse_ray import cli

from .helpers import REPO, kinfuse

pytestmark = pytest.mark.unit

GOOD = """\
name: bad
ladder:
  - {name: a, hidden_size: 24, n_layers: 1, n_heads: 2}
ratios: [0.2, 0.5]
data: {n_general_facts: 20, n_domain_facts: 20, vocab_size: 300, seq_len: 16}
eval: {val_sequences: 2}
"""
TEMPLATES = {
    "relations": {
        "born_in": {
            "templates": ["{subject} was born in {object}."],
            "question": "{subject} was born in",
        }
    }
}


def triples(*rows: tuple[str, str]) -> str:
    return "".join(
        json.dumps({"subject": s, "relation": "born_in", "object": o}) + "\n" for s, o in rows
    )


GOOD_TRIPLES = triples(("Ann Lee", "Oslo"), ("Bo Kim", "Lima"), ("Cy Day", "Rome"))
KNOWLEDGE = "general_facts: g.jsonl, domain_facts: d.jsonl, templates: t.json"


def with_data(fields: str) -> str:
    return GOOD.replace("seq_len: 16}", f"seq_len: 16, {fields}}}")


def knowledge_files(general=GOOD_TRIPLES, domain=GOOD_TRIPLES, templates=TEMPLATES) -> dict:
    """The files `with_knowledge` reads: good ones unless a case breaks one."""
    return {"g.jsonl": general, "d.jsonl": domain, "t.json": json.dumps(templates)}


def with_knowledge(n_general: int = 3) -> str:
    """The sweep reading g.jsonl, d.jsonl and t.json, 3 domain facts and `n_general` general."""
    counts = f"n_general_facts: {n_general}, n_domain_facts: 3"
    return with_data(KNOWLEDGE).replace("n_general_facts: 20, n_domain_facts: 20", counts)


CASES = {
    "malformed YAML": (
        GOOD.replace("ratios: [0.2, 0.5]", "ratios: [0.2, 0.5"),
        {},
        "malformed YAML",
    ),
    "misspelt field": (
        GOOD.replace("ratios:", "ratio:"),
        {},
        "field 'ratio': unknown field (did you mean 'ratios'?)",
    ),
    "unknown nested field": (
        GOOD.replace("val_sequences: 2", "val_sequence: 2"),
        {},
        "field 'eval.val_sequence': unknown field",
    ),
    "wrong type": (
        GOOD.replace("hidden_size: 24", "hidden_size: wide"),
        {},
        "field 'ladder.0.hidden_size': Input should be a valid integer",
    ),
    "ratio of 1": (
        GOOD.replace("[0.2, 0.5]", "[0.2, 1.0]"),
        {},
        "field 'ratios.1': Input should be less than 1",
    ),
    "negative ratio": (GOOD.replace("[0.2, 0.5]", "[-0.1, 0.5]"), {}, "field 'ratios.0'"),
    "NaN ratio": (
        GOOD.replace("[0.2, 0.5]", "[.nan, 0.5]"),
        {},
        "field 'ratios.0': Input should be a finite number",
    ),
    "infinite number": (
        GOOD + "train: {lr: .inf}\n",
        {},
        "field 'train.lr': Input should be a finite number",
    ),
    "output folder under a file": (
        GOOD + "output_dir: blocker/out\n",
        {"blocker": "a file, not a folder"},
        "output_dir: cannot create",
    ),
    "empty ladder": (
        GOOD.replace("  - {name: a, hidden_size: 24, n_layers: 1, n_heads: 2}\n", "").replace(
            "ladder:", "ladder: []"
        ),
        {},
        "field 'ladder': List should have at least 1 item",
    ),
    "not a mapping": ("- just\n- a list\n", {}, "expected a mapping of sweep fields"),
    "missing corpus": (with_data("corpus: nowhere.txt"), {}, "nowhere.txt: cannot read corpus"),
    "empty corpus": (
        with_data("corpus: empty.txt"),
        {"empty.txt": "\n\n"},
        "empty.txt: corpus is empty",
    ),
    "malformed knowledge line": (
        with_knowledge(),
        knowledge_files(general=GOOD_TRIPLES + "{not json\n"),
        "g.jsonl: line 4: expected a record with subject, relation and object",
    ),
    "duplicate triple": (
        with_knowledge(),
        knowledge_files(general=GOOD_TRIPLES + triples(("Bo Kim", "Lima"))),
        "g.jsonl: line 4: duplicate line 2 (Bo Kim, born_in)",
    ),
    "contradictory triple": (
        with_knowledge(),
        knowledge_files(domain=GOOD_TRIPLES + triples(("Ann Lee", "Rome"))),
        "d.jsonl: line 4: contradicts line 1 (Ann Lee, born_in)",
    ),
    "template without a placeholder": (
        with_knowledge(),
        knowledge_files(
            templates={
                "relations": {
                    "born_in": {
                        "templates": ["Born in {object}."],
                        "question": "{subject} was born in",
                    }
                }
            }
        ),
        "t.json: relation 'born_in': template 'Born in {object}.' lacks {subject} or {object}",
    ),
    "more facts than the file holds": (
        with_knowledge(n_general=50),
        knowledge_files(),
        "g.jsonl: the sweep asks for 50 facts, the file has 3",
    ),
    "unreachable Ray address": (
        GOOD + "ray: {address: '127.0.0.1:9'}\n",
        {},
        "ray.address: cannot connect to '127.0.0.1:9'",
    ),
    # One case per class of input each schema field must refuse (the review of issue 16).
    "empty name": (GOOD.replace("name: bad", "name: ''"), {}, "field 'name': String should"),
    "empty tracking URI": (
        GOOD + "mlflow: {tracking_uri: ''}\n",
        {},
        "field 'mlflow.tracking_uri': String should have at least 1 character",
    ),
    "zero count": (
        GOOD.replace("val_sequences: 2", "val_sequences: 0"),
        {},
        "field 'eval.val_sequences': Input should be greater than 0",
    ),
    "knowledge file is a folder": (
        with_knowledge().replace("g.jsonl", "folder"),
        {**knowledge_files(), "folder/.keep": ""},
        "folder: cannot read knowledge file (Is a directory)",
    ),
    "corpus is a plain folder": (
        with_data("corpus: folder"),
        {"folder/.keep": ""},
        "folder: not a dataset saved with save_to_disk",
    ),
    "a rung too big for this machine": (
        GOOD.replace(
            "hidden_size: 24, n_layers: 1, n_heads: 2",
            "hidden_size: 16384, n_layers: 64, n_heads: 128",
        ),
        {},
        "ladder rung 'a' needs about",
    ),
    "confirmation without a target": (
        GOOD + "predict: {confirm: true}\n",
        {},
        "field 'predict': confirm: true needs a target to confirm",
    ),
    "unreachable tracking server": (
        GOOD + "mlflow: {tracking_uri: 'http://127.0.0.1:9'}\n",
        {},
        "mlflow.tracking_uri 'http://127.0.0.1:9': cannot reach the tracking store",
    ),
}


# The cases also run as real subprocesses: a file error, a schema error, an unreachable store.
AS_SUBPROCESS = ("malformed YAML", "ratio of 1", "unreachable tracking server")


def write_case(tmp_path, case: str) -> tuple[list, str]:
    text, files, message = CASES[case]
    for name, content in {"sweep.yaml": text, **files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    return sorted(tmp_path.rglob("*")), message


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_one_line_and_leaves_nothing_behind(tmp_path, monkeypatch, capsys, case):
    before, message = write_case(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["sweep", "sweep.yaml"])  # an exception escaping it fails the test
    out, err = capsys.readouterr()
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("kinfuse: error: ") and message in last, last
    assert sorted(tmp_path.rglob("*")) == before  # no mlflow.db, no runs/, nothing half-written


@pytest.mark.parametrize("case", AS_SUBPROCESS)
def test_bad_input_as_a_real_process_exits_2_without_a_traceback(tmp_path, case):
    before, message = write_case(tmp_path, case)
    proc = kinfuse(tmp_path, "sweep", "sweep.yaml")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kinfuse: error: ") and message in last, last
    assert sorted(tmp_path.rglob("*")) == before


def test_a_missing_sweep_file_is_one_line(tmp_path):
    proc = kinfuse(tmp_path, "sweep", "nope.yaml")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "kinfuse: error: nope.yaml: cannot read sweep file (No such file or directory)"
    )


def test_resume_with_nothing_to_resume_is_refused(tmp_path):
    (tmp_path / "sweep.yaml").write_text(GOOD)
    proc = kinfuse(tmp_path, "sweep", "sweep.yaml", "--resume")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kinfuse: error: --resume: no interrupted sweep 'bad' in ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [(["sweep"], "kinfuse sweep: error: the following arguments are required: sweep_file"),
     (["predict", "--n-params", "x"], "kinfuse predict: error: argument --n-params: not a number"),
     (["bogus"], "kinfuse: error: argument command: invalid choice: 'bogus'")],
)  # fmt: skip
def test_a_wrong_command_line_is_one_line_that_points_to_help(argv, says, capsys):
    with pytest.raises(SystemExit) as ended:
        cli.main(argv)
    assert ended.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(says) and line.endswith("--help)"), line


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`kinfuse ... | head`: the reader closes the pipe before the command has printed; it ends
    quietly (141, as a shell reports a closed pipe), not with a BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "kinfuse_ray.cli", "plan", "--no-probe",
                             str(REPO / "sweeps" / "quickstart.yaml")], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    proc.stdout.close()  # before it can have printed a line: it is still importing
    said = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, said
    assert "Traceback" not in said and "BrokenPipe" not in said, said
