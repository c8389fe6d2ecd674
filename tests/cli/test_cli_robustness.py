"""glot-st: every error is one line with exit status 2 (Ctrl-C: 130); outputs are guarded and written atomically."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import glot_st
import glot_st.train.loop as loop_mod
from glot_st.cli import main

from tiny_backbones import save_tiny_backbone

TEXTS = ["a good dog", "a great cat", "nice music", "good food", "a bad dog", "terrible food", "bad weather", "cold"]
LABELS = ["pos"] * 4 + ["neg"] * 4


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return save_tiny_backbone(tmp_path_factory.mktemp("cli_robust") / "bert", "bert", seed=6)


@pytest.fixture(scope="module")
def model_dir(backbone, tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("cli_model") / "model"
    glot_st.save(glot_st.from_backbone(backbone, device="cpu", hidden_dim=8, num_layers=1), folder)
    return folder


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(status, err, needle, code=2):
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == code, err
    assert lines and needle in lines[-1], err
    assert "Traceback" not in err


@pytest.fixture()
def texts_file(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    return path


@pytest.fixture()
def train_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(TEXTS, LABELS)))
    return path


@pytest.mark.parametrize(
    ("device", "needle"),
    [("bogus", "is not a torch device"), pytest.param("cuda", "has no cuda device", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has CUDA"))],
)
def test_device_is_checked_up_front(capsys, model_dir, texts_file, tmp_path, device, needle):
    status, _, err = run(capsys, "encode", "--model", model_dir, "--input", texts_file, "--output",
                         tmp_path / "e.npy", "--device", device)
    one_line_error(status, err, needle)
    assert not (tmp_path / "e.npy").exists()


def test_encode_refuses_an_existing_output_without_overwrite(capsys, model_dir, texts_file, tmp_path):
    output = tmp_path / "e.npy"
    np.save(output, np.arange(3.0))
    status, _, err = run(capsys, "encode", "--model", model_dir, "--input", texts_file, "--output", output)
    one_line_error(status, err, "exists; pass --overwrite")
    np.testing.assert_array_equal(np.load(output), np.arange(3.0))
    status, _, _ = run(capsys, "encode", "--model", model_dir, "--input", texts_file, "--output", output,
                       "--overwrite", "--quiet")
    assert status == 0 and np.load(output).shape[0] == len(TEXTS)


def test_encode_checks_writability_before_loading_the_model(capsys, model_dir, texts_file, tmp_path, monkeypatch):
    monkeypatch.setattr("os.access", lambda *args, **kwargs: False)
    monkeypatch.setattr(glot_st, "load", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    status, _, err = run(capsys, "encode", "--model", model_dir, "--input", texts_file, "--output", tmp_path / "e.npy")
    one_line_error(status, err, "is not writable")


def test_encode_on_a_full_disk_keeps_the_previous_file(capsys, model_dir, texts_file, tmp_path, monkeypatch):
    output = tmp_path / "e.npy"
    np.save(output, np.arange(3.0))

    def disk_full(handle, *args, **kwargs):
        handle.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    status, _, err = run(capsys, "encode", "--model", model_dir, "--input", texts_file, "--output", output,
                         "--overwrite", "--quiet")
    monkeypatch.undo()
    one_line_error(status, err, "disk is full")
    np.testing.assert_array_equal(np.load(output), np.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npy", "texts.txt"]


def test_encode_refuses_a_cross_encoder_folder(capsys, model_dir, texts_file, tmp_path):
    folder = tmp_path / "cross"
    shutil.copytree(model_dir, folder)
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    (folder / "config_sentence_transformers.json").write_text(json.dumps({**config, "model_type": "CrossEncoder"}))
    status, _, err = run(capsys, "encode", "--model", folder, "--input", texts_file, "--output", tmp_path / "e.npy")
    one_line_error(status, err, "is a 'CrossEncoder' model")


def test_list_flag_errors_name_the_flag(capsys):
    status, _, err = run(capsys, "glue", "--seeds", "a,b")
    one_line_error(status, err, "--seeds 'a,b'")


def test_ctrl_c_during_caching_is_one_line_and_status_130(capsys, backbone, train_file, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop_mod, "_build_unique_cache", interrupted)
    status, _, err = run(capsys, "train", "--train-file", train_file, "--text-column", "text", "--label-column",
                         "label", "--output-dir", tmp_path / "out", "--model", backbone, "--quiet")
    one_line_error(status, err, "interrupted", code=130)
    assert not (tmp_path / "out").exists()


def test_truncated_backbone_weights_are_one_line(capsys, backbone, train_file, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(backbone, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-200])
    status, _, err = run(capsys, "train", "--train-file", train_file, "--text-column", "text", "--label-column",
                         "label", "--output-dir", tmp_path / "out", "--model", broken, "--quiet")
    assert status == 2 and "Traceback" not in err and len([x for x in err.splitlines() if "error" in x]) == 1


def test_output_dir_of_another_model_needs_overwrite(capsys, backbone, model_dir, train_file, tmp_path):
    other = tmp_path / "minilm_copy"
    shutil.copytree(model_dir, other)
    status, _, err = run(capsys, "train", "--train-file", train_file, "--text-column", "text", "--label-column",
                         "label", "--output-dir", other, "--model", backbone, "--quiet")
    one_line_error(status, err, "a model that no glot-st training run wrote")
    assert (other / "modules.json").is_file() and not (other / "glot_head").exists()


def test_second_train_into_the_same_output_dir_fails_at_once(capsys, backbone, train_file, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from glot_st.safe_io import output_lock
            with output_lock({str(out)!r}):
                print("locked", flush=True)
                time.sleep(30)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        status, _, err = run(capsys, "train", "--train-file", train_file, "--text-column", "text", "--label-column",
                             "label", "--output-dir", out, "--model", backbone, "--quiet")
    finally:
        holder.kill()
        holder.wait()
    one_line_error(status, err, f"being written by another process (pid {holder.pid}")
