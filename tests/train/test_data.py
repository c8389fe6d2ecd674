"""Loaders of the GLUE-lite / STS-B copy (the repository's data/ folder) and their error messages."""

from __future__ import annotations

import math

import pytest

from glot_st.train.data import TASKS, TaskSpec, TextSplit, load_split
from glot_st.train.data import resolve_data_dir as data_dir
from glot_st.train.metrics import METRICS

# documented in data/README.md
ROW_COUNTS = {
    ("stsb", "train"): 5749,
    ("stsb", "dev"): 1500,
    ("stsb", "test"): 1379,
    ("sst2", "train"): 67349,
    ("sst2", "dev"): 872,
    ("cola", "train"): 8551,
    ("cola", "dev"): 516,
    ("mrpc", "train"): 3668,
    ("mrpc", "dev"): 408,
    ("rte", "train"): 2490,
    ("rte", "dev"): 277,
}


def test_task_specs_cover_every_documented_split():
    assert set(TASKS) == {"stsb", "sst2", "cola", "mrpc", "rte"}
    assert {(t, s) for t, spec in TASKS.items() for s in spec.splits} == set(ROW_COUNTS)
    for name, spec in TASKS.items():
        assert isinstance(spec, TaskSpec) and spec.name == name
        assert spec.eval_split in spec.splits
        assert spec.metric in METRICS
    assert TASKS["stsb"].kind == "regression" and TASKS["stsb"].num_labels == 1
    assert TASKS["stsb"].eval_split == "test" and TASKS["stsb"].metric == "spearman"
    assert TASKS["cola"].metric == "mcc" and TASKS["mrpc"].metric == "f1"
    assert TASKS["sst2"].kind == "single" and TASKS["rte"].kind == "pair"


@pytest.mark.parametrize(("task", "split"), sorted(ROW_COUNTS))
def test_every_split_loads_with_documented_rows_and_label_range(task, split):
    data = load_split(task, split)
    spec = TASKS[task]
    assert (data.task, data.split) == (task, split)
    assert len(data) == ROW_COUNTS[(task, split)]
    assert len(data.texts_a) == len(data.labels) == len(data)
    assert all(isinstance(t, str) and t.strip() for t in data.texts_a)
    if spec.kind == "single":
        assert data.texts_b is None and not data.is_pair
    else:
        assert data.is_pair and len(data.texts_b) == len(data)
        assert all(isinstance(t, str) and t.strip() for t in data.texts_b)
    if spec.kind == "regression":
        assert all(type(y) is float and 0.0 <= y <= 5.0 for y in data.labels)
        assert min(data.labels) < 1.0 and max(data.labels) > 4.0  # really spans the 0..5 scale
    else:
        assert all(type(y) is int for y in data.labels)
        assert set(data.labels) == {0, 1}


def test_first_rows_match_the_files():
    sst2 = load_split("sst2", "dev", limit=2)
    assert sst2.texts_a[0].startswith("it 's a charming and often affecting journey")
    assert sst2.labels == [1, 0]
    cola = load_split("cola", "train", limit=1)
    assert cola.texts_a == ["our friends wo n't buy this analysis , let alone the next one we propose"]
    rte = load_split("rte", "dev", limit=1)
    assert rte.texts_b == ["Christopher Reeve had an accident."] and rte.labels == [1]
    stsb = load_split("stsb", "train", limit=2)
    assert stsb.texts_a == ["A plane is taking off.", "A man is playing a large flute."]
    assert stsb.texts_b == ["An air plane is taking off.", "A man is playing a flute."]
    assert stsb.labels == [5.0, 3.8]


def test_mrpc_has_no_bom_and_keeps_quote_characters():
    train = load_split("mrpc", "train", limit=1)
    assert not train.texts_a[0].startswith("\ufeff")
    assert train.texts_a[0].startswith("Amrozi accused his brother")
    assert '"the witness"' in train.texts_a[0]  # quoting is off: quotes stay in the text
    assert train.labels == [1]
    dev = load_split("mrpc", "dev", limit=1)
    assert dev.texts_b[0].startswith('"The foodservice pie business')


def test_stsb_rows_with_extra_columns_parse_by_position():
    path = data_dir() / "stsb" / "sts-train.csv"
    lines = path.read_text(encoding="utf-8").split("\n")
    wide = [(i, line.split("\t")) for i, line in enumerate(lines) if line.count("\t") > 6]
    assert wide, "the bundled STS-B train file should hold rows with extra trailing columns"
    data = load_split("stsb", "train")
    for index, fields in wide[:20]:  # no header: line i (0-based) is row i
        assert data.texts_a[index] == fields[5]
        assert data.texts_b[index] == fields[6]
        assert data.labels[index] == float(fields[4])


def test_stsb_extra_columns_in_a_private_copy(tmp_path):
    (tmp_path / "stsb").mkdir()
    (tmp_path / "stsb" / "sts-dev.csv").write_text(
        "g\tsrc\t2016\t0001\t4\tFirst one.\tSecond one.\tnote a\tnote b\n"
        "g\tsrc\t2016\t0002\t0.5\tThird.\tFourth.\n",
        encoding="utf-8",
    )
    data = load_split("stsb", "dev", data_dir=tmp_path)
    assert data.texts_a == ["First one.", "Third."]
    assert data.texts_b == ["Second one.", "Fourth."]
    assert data.labels == [4.0, 0.5]


def test_limit_keeps_the_first_rows():
    full = load_split("cola", "dev")
    head = load_split("cola", "dev", limit=7)
    assert len(head) == 7
    assert head.texts_a == full.texts_a[:7] and head.labels == full.labels[:7]
    assert len(load_split("rte", "dev", limit=10_000)) == 277  # more than available: all rows
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="limit"):
            load_split("cola", "dev", limit=bad)


def test_unknown_task_lists_valid_tasks():
    with pytest.raises(ValueError, match="unknown task 'qqp'.*cola.*mrpc.*rte.*sst2.*stsb"):
        load_split("qqp", "train")


def test_bad_split_lists_valid_splits():
    with pytest.raises(ValueError, match="no split 'test'.*train, dev"):
        load_split("sst2", "test")
    with pytest.raises(ValueError, match="no split 'validation'"):
        load_split("stsb", "validation")


def _write(tmp_path, task, name, text):
    folder = tmp_path / task
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_malformed_row_names_file_and_line(tmp_path):
    path = _write(tmp_path, "cola", "train.tsv", "good sentence\t1\nanother\t0\nno label column here\n")
    with pytest.raises(ValueError) as info:
        load_split("cola", "train", data_dir=tmp_path)
    assert f"{path}:3" in str(info.value)
    assert "expected 2" in str(info.value) and "got 1" in str(info.value)


@pytest.mark.parametrize(
    ("task", "name", "text", "line", "needle"),
    [
        ("sst2", "dev.tsv", "sentence\tlabel\nfine\t1\nbad label\t2\n", 3, "outside 0..1"),
        ("sst2", "dev.tsv", "sentence\tlabel\nfine\tone\n", 2, "not an integer"),
        ("sst2", "dev.tsv", "text\tlabel\nfine\t1\n", 1, "expected header"),
        ("rte", "dev.tsv", "sentence1\tsentence2\tlabel\tidx\na\tb\t0\t0\na\t\t1\t1\n", 3, "empty"),
        ("rte", "dev.tsv", "sentence1\tsentence2\tlabel\tidx\na\tb\t0\t0\textra\n", 2, "expected 4"),
        ("cola", "dev.tsv", "fine\t1\n\nfine\t0\n", 2, "empty line"),
        ("stsb", "sts-test.csv", "g\ts\t2012\t1\t5.0\ta\tb\ng\ts\t2012\t2\t7.5\ta\tb\n", 2, "outside [0, 5]"),
        ("stsb", "sts-test.csv", "g\ts\t2012\t1\tnan\ta\tb\n", 1, "outside [0, 5]"),
        ("stsb", "sts-test.csv", "g\ts\t2012\t1\t3.0\ta\n", 1, "at least 7"),
        ("mrpc", "dev.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\n", 2, "expected 5"),
    ],
)
def test_bad_rows_raise_with_location(tmp_path, task, name, text, line, needle):
    path = _write(tmp_path, task, name, text)
    split = {"sts-test.csv": "test"}.get(name, name.split(".")[0])
    with pytest.raises(ValueError) as info:
        load_split(task, split, data_dir=tmp_path)
    assert f"{path}:{line}" in str(info.value)
    assert needle in str(info.value)


def test_file_without_rows_is_an_error(tmp_path):
    path = _write(tmp_path, "sst2", "dev.tsv", "sentence\tlabel\n")
    with pytest.raises(ValueError, match="no data rows") as info:
        load_split("sst2", "dev", data_dir=tmp_path)
    assert str(path) in str(info.value)


def test_mrpc_private_copy_with_bom_parses(tmp_path):
    _write(
        tmp_path, "mrpc", "dev.tsv",
        '\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1\t2\t"Quoted start\tplain end"\n',
    )
    data = load_split("mrpc", "dev", data_dir=tmp_path)
    assert data.texts_a == ['"Quoted start'] and data.texts_b == ['plain end"'] and data.labels == [0]


def test_missing_file_names_the_path(tmp_path):
    (tmp_path / "cola").mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_split("cola", "dev", data_dir=tmp_path)
    assert str(tmp_path / "cola" / "dev.tsv") in str(info.value)


def test_missing_data_dir_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_split("cola", "dev", data_dir=missing)


def test_textsplit_rejects_ragged_columns():
    with pytest.raises(ValueError, match="labels has 1 rows"):
        TextSplit("x", "train", ["a", "b"], None, [1])
    with pytest.raises(ValueError, match="texts_b has 1 rows"):
        TextSplit("x", "train", ["a", "b"], ["c"], [1, 0])
    split = TextSplit("x", "train", ["a"], None, [math.pi])
    assert len(split) == 1
