"""Corpora and tokenizers from the formats users bring: text, JSON Lines, Parquet, a Hugging Face
dataset folder, a local Hugging Face tokenizer folder."""

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kinfuse_ray.config import DataConfig, EvalConfig
from kinfuse_ray.corpus import corpus_documents
from kinfuse_ray.data import build_bundle
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.knowledge import load_templates, load_triples, render
from kinfuse_ray.tokens import EOS, tokenize_to_file, train_tokenizer

pytestmark = pytest.mark.unit

DOCS = [f"Document {i}: the quick brown fox jumps over the lazy dog {i} times." for i in range(400)]


def test_every_corpus_format_gives_the_same_documents(tmp_path):
    import datasets

    (tmp_path / "c.txt").write_text("\n\n".join(DOCS))
    (tmp_path / "c.txt.gz").write_bytes(gzip.compress("\n\n".join(DOCS).encode()))
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    pq.write_table(pa.table({"text": DOCS, "id": list(range(len(DOCS)))}), tmp_path / "c.parquet")
    datasets.Dataset.from_dict({"text": DOCS}).save_to_disk(str(tmp_path / "hf"))
    for name in ("c.txt", "c.txt.gz", "c.jsonl", "c.parquet", "hf"):
        assert list(corpus_documents(tmp_path / name)) == DOCS, name


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "c.jsonl",
            '{"text": "a"}\n{"body": "b"}\n',
            "c.jsonl: line 2: expected a JSON object with a 'text' field",
        ),
        ("c.txt", "\n\n  \n", "c.txt: corpus is empty"),
        ("c.txt.gz", "not gzip", "c.txt.gz: cannot read corpus (corrupt gzip"),
        ("missing.txt", None, "missing.txt: cannot read corpus (No such file or directory)"),
    ],
)
def test_broken_corpora_name_the_file_and_line(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(KinfuseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        list(corpus_documents(tmp_path / name))


def tokenizer_folder(path):
    """A Hugging Face tokenizer folder, as `save_pretrained` writes it; and its tokenizer."""
    from transformers import PreTrainedTokenizerFast

    trained = train_tokenizer(DOCS + ["Ada was born in Oslo."], vocab_size=300)
    PreTrainedTokenizerFast(tokenizer_object=trained, eos_token=EOS).save_pretrained(path)
    return path, trained


def test_a_local_hugging_face_tokenizer_folder_is_used_as_is(tmp_path):
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    _, trained = tokenizer_folder(tmp_path / "tok")
    data = DataConfig(
        corpus=tmp_path / "c.jsonl", tokenizer=tmp_path / "tok", n_general_facts=20, n_domain_facts=20,
        seq_len=16,
    )  # fmt: skip
    bundle = build_bundle(data, EvalConfig(val_sequences=2), seed=0)
    # The facts are tokenized by the folder's tokenizer: its ids, then end of text.
    relations = load_templates(data.templates)
    fact = load_triples(data.general_facts, relations)[0]
    text = render(fact, relations[fact.relation], 0)
    assert list(bundle.general_facts[0][0][:-1]) == trained.encode(text).ids
    assert bundle.eos_id == trained.token_to_id(EOS)
    assert all(r[-1] == bundle.eos_id for fact in bundle.general_facts for r in fact)

    (tmp_path / "bad").mkdir()
    with pytest.raises(KinfuseError, match="cannot load a tokenizer"):
        build_bundle(data.model_copy(update={"tokenizer": tmp_path / "bad"}), EvalConfig(), 0)


def test_the_corpus_travels_as_a_memory_mapped_file_not_as_data(bundle):
    import pickle

    import numpy as np

    assert isinstance(bundle.corpus, np.memmap) and len(bundle.corpus) > 250_000
    # Trials receive the bundle through Ray's object store: the corpus is not inside it.
    assert len(pickle.dumps(bundle)) < 4 * len(bundle.corpus) / 10
    assert np.array_equal(pickle.loads(pickle.dumps(bundle)).val, bundle.val)


def test_a_hugging_face_dataset_streams_by_name(tmp_path):
    """hf:NAME streams with `datasets` (here a local folder of Parquet files, as the hub is not
    reachable from this machine; a hub name takes the same path)."""
    (tmp_path / "corpus").mkdir()
    pq.write_table(pa.table({"text": DOCS}), tmp_path / "corpus" / "train.parquet")
    assert list(corpus_documents(f"hf:{tmp_path / 'corpus'}", max_documents=50)) == DOCS[:50]
    with pytest.raises(KinfuseError, match="cannot stream the dataset"):
        list(corpus_documents(f"hf:{tmp_path / 'nothing-here'}"))


def test_a_corpus_broken_midway_leaves_no_token_file_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("KINFUSE_CACHE", str(tmp_path / "cache"))
    lines = [json.dumps({"text": d}) for d in DOCS]
    lines[2500 // 8] = '{"body": "no text"}'
    (tmp_path / "c.jsonl").write_text("\n".join(lines))
    tokenizer = train_tokenizer(DOCS, vocab_size=300)
    with pytest.raises(KinfuseError, match="line 313"):
        tokenize_to_file(tokenizer, corpus_documents(tmp_path / "c.jsonl"), "key", batch=64)
    assert not [f for f in (tmp_path / "cache").rglob("*") if f.is_file()]


def test_an_edited_corpus_is_tokenized_again(tmp_path, monkeypatch):
    monkeypatch.setenv("KINFUSE_CACHE", str(tmp_path / "cache"))
    data = DataConfig(
        corpus=tmp_path / "c.txt", n_general_facts=20, n_domain_facts=20, seq_len=16,
        vocab_size=300,
    )  # fmt: skip
    (tmp_path / "c.txt").write_text("\n\n".join(DOCS))
    first = build_bundle(data, EvalConfig(val_sequences=2), seed=0)
    assert build_bundle(data, EvalConfig(val_sequences=2), 0).tokens_path == first.tokens_path
    (tmp_path / "c.txt").write_text("\n\n".join(reversed(DOCS)))
    second = build_bundle(data, EvalConfig(val_sequences=2), seed=0)
    assert second.tokens_path != first.tokens_path
    assert not np.array_equal(second.corpus[:50], first.corpus[:50])


def test_a_pretokenized_numpy_corpus_is_memory_mapped_as_is(tmp_path):
    folder, tokenizer = tokenizer_folder(tmp_path / "tok")
    ids = np.concatenate([e.ids for e in tokenizer.encode_batch(DOCS * 3)]).astype(np.uint16)
    np.save(tmp_path / "tokens.npy", ids)
    data = DataConfig(
        corpus=tmp_path / "tokens.npy", tokenizer=folder, n_general_facts=20, n_domain_facts=20,
        seq_len=16,
    )  # fmt: skip
    bundle = build_bundle(data, EvalConfig(val_sequences=2), seed=0)
    assert bundle.tokens_path == str(tmp_path / "tokens.npy")  # no copy
    assert np.array_equal(np.concatenate([bundle.corpus, bundle.val]), ids)

    np.save(tmp_path / "tokens.npy", np.full(1000, 5000, dtype=np.int32))
    with pytest.raises(KinfuseError, match=r"tokens.npy: token ids 5000..5000 do not fit"):
        build_bundle(data, EvalConfig(val_sequences=2), seed=0)
    with pytest.raises(ValueError, match="a .npy corpus holds token ids: set tokenizer"):
        DataConfig(corpus=tmp_path / "tokens.npy")
