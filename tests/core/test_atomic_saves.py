"""glot_st.save is atomic: an injected failure at any point of a save into an existing model folder (a crash, a
full disk) leaves the old model, loading with its old embeddings; a killed save's leftovers are recovered; a
second writer is refused; a folder holding other files is never replaced."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import glot_st
import glot_st.builder as builder_mod
import glot_st.hub as hub_mod
import glot_st.safe_io as safe_io
from glot_st.module import GLOT
from glot_st.safe_io import ASIDE_TAG, STAGING_TAG, OutputBusyError, output_lock, recover_folder, replace_folder

from tiny_backbones import save_tiny_backbone

TEXTS = ["a good dog", "bad weather today", "the nice piano"]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return save_tiny_backbone(tmp_path_factory.mktemp("atomic") / "bert", "bert", seed=3)


def model_with_seed(backbone, seed):
    torch.manual_seed(seed)
    return glot_st.from_backbone(backbone, device="cpu", hidden_dim=8, num_layers=1, dropout=0.0)


def embeddings(path):
    return glot_st.load(str(path), device="cpu").encode(TEXTS, convert_to_numpy=True)


@pytest.fixture()
def saved(backbone, tmp_path):
    """(folder, its embeddings, a different model to save over it)."""
    folder = tmp_path / "model"
    glot_st.save(model_with_seed(backbone, 0), folder)
    return folder, embeddings(folder), model_with_seed(backbone, 1)


def boom(*args, **kwargs):
    raise RuntimeError("injected crash")


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def glot_config_then_crash(self, path, *args, **kwargs):
    self.save_config(path)  # half of the module written
    raise RuntimeError("injected crash")


def rename_fails_second_time():
    real, calls = os.rename, []

    def rename(source, target):
        calls.append(source)
        if len(calls) == 2:  # target aside done, the new folder not yet in
            raise OSError(errno.EIO, "injected rename failure")
        return real(source, target)

    return rename


FAILURES = [
    ("glot save half-way", GLOT, "save", glot_config_then_crash, RuntimeError),
    ("hub-native step", builder_mod, "make_hub_native", boom, RuntimeError),
    ("modeling source full disk", hub_mod, "modeling_source", disk_full, OSError),
    ("flush before the swap", safe_io, "_flush_tree", disk_full, OSError),
]


@pytest.mark.parametrize(("where", "owner", "name", "replacement", "error"), FAILURES, ids=[f[0] for f in FAILURES])
def test_failed_save_leaves_the_old_model(saved, monkeypatch, where, owner, name, replacement, error):
    folder, before, other = saved
    monkeypatch.setattr(owner, name, replacement)
    with pytest.raises(error):
        glot_st.save(other, folder)
    monkeypatch.undo()
    np.testing.assert_array_equal(embeddings(folder), before)
    assert sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(".model.glot-")) == [".model.glot-lock"]


def test_full_disk_error_names_the_folder_and_the_cause(saved, monkeypatch):
    folder, before, other = saved
    monkeypatch.setattr(GLOT, "save", disk_full)
    with pytest.raises(OSError, match="disk is full.*model"):
        glot_st.save(other, folder)
    monkeypatch.undo()
    np.testing.assert_array_equal(embeddings(folder), before)


def test_failure_inside_the_swap_puts_the_old_folder_back(saved, monkeypatch):
    folder, before, other = saved
    monkeypatch.setattr(safe_io.os, "rename", rename_fails_second_time())
    with pytest.raises(OSError, match="injected rename failure"):
        glot_st.save(other, folder)
    monkeypatch.undo()
    np.testing.assert_array_equal(embeddings(folder), before)


def test_successful_save_replaces_the_model(saved):
    folder, before, other = saved
    glot_st.save(other, folder)
    after = embeddings(folder)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, other.encode(TEXTS, convert_to_numpy=True), atol=1e-5)


def test_a_killed_swap_is_recovered_by_the_next_write(saved):
    folder, before, other = saved
    # what a kill between the two renames leaves: the old model aside, no target, a complete staging folder
    aside = folder.with_name(f".model{ASIDE_TAG}999-dead")
    os.rename(folder, aside)
    staging = folder.with_name(f".model{STAGING_TAG}999-dead")
    staging.mkdir()
    (staging / "partial.bin").write_bytes(b"x")
    with output_lock(folder):
        handled = recover_folder(folder)
    assert {p.name for p in handled} == {aside.name, staging.name}
    np.testing.assert_array_equal(embeddings(folder), before)  # restored
    assert not staging.exists() and not aside.exists()


def test_leftover_staging_is_cleaned_by_the_next_save(saved):
    folder, _, other = saved
    leftover = folder.with_name(f".model{STAGING_TAG}999-dead")
    leftover.mkdir()
    glot_st.save(other, folder)
    assert not leftover.exists()


def test_save_refuses_a_folder_holding_other_files(backbone, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="holding no saved model"):
        glot_st.save(model_with_seed(backbone, 0), tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"


def test_second_writer_is_refused_with_the_holder_named(tmp_path):
    target = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from glot_st.safe_io import output_lock
            with output_lock({str(target)!r}):
                print("locked", flush=True)
                time.sleep(30)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputBusyError, match=f"another process \\(pid {holder.pid}"):
            with replace_folder(target):
                pass
    finally:
        holder.kill()
        holder.wait()
    with replace_folder(target) as staging:  # free again once the holder is gone
        (staging / "f").write_text("ok")
    assert (target / "f").read_text() == "ok"


def test_lock_is_reentrant_within_a_process(tmp_path):
    with output_lock(tmp_path / "out"), replace_folder(tmp_path / "out") as staging:
        (staging / "f").write_text("ok")
    assert (tmp_path / "out" / "f").is_file()
