"""Hugging Face Hub round trip without a network, and the GLOT model card.

``push_to_hub`` saves the model into a temporary folder and uploads that folder with
``HfApi.upload_folder``. The test replaces ``HfApi`` with a fake that copies the folder it is given, lays
the captured files out as a Hugging Face cache (``models--org--name/snapshots/<sha>/...`` and
``refs/main``), and loads the repo id from there with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from sentence_transformers import SentenceTransformer

import glot_st
from glot_st.model_card import GLOTModelCardData, attach_model_card, glot_template

from tiny_backbones import save_tiny_backbone

try:  # sentence-transformers 6
    import sentence_transformers.base.model as st_model_module
    from sentence_transformers.sentence_transformer.model_card import SentenceTransformerModelCardData
except ImportError:  # pragma: no cover - sentence-transformers 5
    import sentence_transformers.SentenceTransformer as st_model_module
    from sentence_transformers.model_card import SentenceTransformerModelCardData

REPO_ID = "glot-org/tiny-glot"
SHA = "0123456789abcdef0123456789abcdef01234567"
SENTENCES = ["a man plays the guitar .", "the dog runs in the park", "it is sunny outside today"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    return save_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"), "bert")


@pytest.fixture()
def model(tiny_bert):
    torch.manual_seed(0)
    model = glot_st.from_backbone(tiny_bert, device="cpu", hidden_dim=16, num_layers=2, tau=0.3, dropout=0.0)
    with torch.no_grad():  # non-default weights, so a load that silently re-initialises would show
        for parameter in model[1].parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return model.eval()


class FakeHfApi:
    """Records what ``push_to_hub`` would send: ``create_repo`` and a copy of every uploaded folder."""

    uploads: list[dict] = []

    def __init__(self, token=None, **kwargs):
        self.token = token

    def create_repo(self, repo_id, private=None, repo_type=None, exist_ok=False, **kwargs):
        return SimpleNamespace(repo_id=repo_id)

    def create_branch(self, repo_id, branch, exist_ok=False, **kwargs):
        return None

    def upload_folder(self, repo_id, folder_path, commit_message=None, revision=None, create_pr=False, **kwargs):
        files = {
            path.relative_to(folder_path).as_posix(): path.read_bytes()
            for path in sorted(Path(folder_path).rglob("*"))
            if path.is_file()
        }
        FakeHfApi.uploads.append({"repo_id": repo_id, "files": files, "commit_message": commit_message})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{SHA}", pr_url=None)


def fake_push(model, monkeypatch) -> dict:
    """``model.push_to_hub(REPO_ID)`` against :class:`FakeHfApi`; returns the captured upload."""
    FakeHfApi.uploads = []
    monkeypatch.setattr(st_model_module, "HfApi", FakeHfApi)
    original_load_file_path = st_model_module.load_file_path

    def no_remote_readme(model_name_or_path, filename, *args, **kwargs):
        if model_name_or_path == REPO_ID and filename == "README.md":
            return None  # a new repository: push_to_hub writes the card
        return original_load_file_path(model_name_or_path, filename, *args, **kwargs)

    monkeypatch.setattr(st_model_module, "load_file_path", no_remote_readme)
    url = model.push_to_hub(REPO_ID)
    assert url.endswith(SHA)
    assert len(FakeHfApi.uploads) == 1 and FakeHfApi.uploads[0]["repo_id"] == REPO_ID
    return FakeHfApi.uploads[0]


def place_in_hf_cache(files: dict[str, bytes], cache: Path, repo_id: str = REPO_ID, sha: str = SHA) -> Path:
    """Lay ``files`` out as the Hugging Face cache would after downloading ``repo_id`` at ``sha``."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / sha
    for name, data in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(sha)
    return snapshot


def test_push_to_hub_then_load_by_repo_id(model, monkeypatch, tmp_path):
    upload = fake_push(model, monkeypatch)
    files = upload["files"]
    for name in ("modules.json", "config.json", "model.safetensors", "1_GLOT/glot_config.json",
                 "1_GLOT/model.safetensors", "README.md", "config_sentence_transformers.json"):
        assert name in files, f"{name} missing from the upload: {sorted(files)}"

    cache = tmp_path / "hf-cache"
    place_in_hf_cache(files, cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = model.encode(SENTENCES, convert_to_tensor=True)

    loaded = glot_st.load(REPO_ID, cache_folder=str(cache), device="cpu")
    assert type(loaded[1]).__name__ == "GLOT"
    assert loaded[1].get_config_dict() == model[1].get_config_dict()
    torch.testing.assert_close(loaded.encode(SENTENCES, convert_to_tensor=True), expected, rtol=0, atol=1e-6)

    plain = SentenceTransformer(REPO_ID, cache_folder=str(cache), trust_remote_code=True, device="cpu")
    torch.testing.assert_close(plain.encode(SENTENCES, convert_to_tensor=True), expected, rtol=0, atol=1e-6)


def test_repo_id_without_trust_remote_code_is_refused(model, monkeypatch, tmp_path):
    files = fake_push(model, monkeypatch)["files"]
    cache = tmp_path / "hf-cache"
    place_in_hf_cache(files, cache)
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(REPO_ID, cache_folder=str(cache), device="cpu")


def test_pushed_model_card_says_install_and_shows_config(model, monkeypatch):
    card = fake_push(model, monkeypatch)["files"]["README.md"].decode("utf-8")
    assert "pip install glot-st" in card
    assert "pip install -U sentence-transformers glot-st" in card
    assert "### GLOT pooling" in card and "#### GLOT configuration" in card
    assert f'glot_st.load("{REPO_ID}")' in card
    assert f'SentenceTransformer("{REPO_ID}", trust_remote_code=True)' in card
    assert "- glot-st" in card.split("---")[1]  # the tag, in the YAML header
    for key, value in model[1].get_config_dict().items():
        assert f"| `{key}` | `{value}` |" in card, key
    # the section sits in Model Details, after the architecture block and before Usage
    assert card.index("### Full Model Architecture") < card.index("### GLOT pooling") < card.index("## Usage")


def test_saved_card_survives_save_load_save(model, tmp_path):
    model.save(str(tmp_path / "a"))
    first = (tmp_path / "a" / "README.md").read_text(encoding="utf-8")
    assert "pip install glot-st" in first and "sentence_transformers_model_id" in first
    loaded = glot_st.load(str(tmp_path / "a"), device="cpu")
    assert isinstance(loaded.model_card_data, GLOTModelCardData)
    loaded.save(str(tmp_path / "b"))
    assert "pip install glot-st" in (tmp_path / "b" / "README.md").read_text(encoding="utf-8")


def test_card_data_attach_is_idempotent_picklable_and_respects_user_classes(model):
    card = model.model_card_data
    assert isinstance(card, GLOTModelCardData)
    attach_model_card(model)
    assert card.tags.count("glot-st") == 1
    clone = pickle.loads(pickle.dumps(card))  # multi-process encoding pickles the model
    assert isinstance(clone, GLOTModelCardData) and Path(clone.template_path).is_file()

    class MyCard(SentenceTransformerModelCardData):
        pass

    mine = MyCard(local_files_only=True)
    user_model = SimpleNamespace(model_card_data=mine)
    attach_model_card(user_model)
    assert type(mine) is MyCard and "glot-st" in mine.tags


def test_glot_template_from_other_templates():
    assert glot_template("# Card\n\n## Usage\nx\n").count("{{ glot_section }}") == 1
    assert glot_template("# Card\n").rstrip().endswith("{{ glot_section }}")


def test_glot_model_card_data_can_be_passed_explicitly(tiny_bert, tmp_path):
    card = GLOTModelCardData(local_files_only=True, model_id="me/explicit", language="en")
    model = glot_st.from_backbone(tiny_bert, device="cpu", hidden_dim=8, num_layers=1)
    model = SentenceTransformer(modules=[model[0], model[1]], model_card_data=card, device="cpu")
    model.save(str(tmp_path / "m"))
    text = (tmp_path / "m" / "README.md").read_text(encoding="utf-8")
    assert 'glot_st.load("me/explicit")' in text and "language:\n- en" in text
    shutil.rmtree(tmp_path / "m")


def test_glot_st_push_to_hub_uploads_a_hub_native_model(model, monkeypatch, tmp_path):
    FakeHfApi.uploads = []
    monkeypatch.setattr(st_model_module, "HfApi", FakeHfApi)
    url = glot_st.push_to_hub(model, REPO_ID)
    assert url.endswith(SHA)
    files = FakeHfApi.uploads[0]["files"]
    assert "glot_modeling.py" in files and "README.md" in files
    assert [m["type"] for m in json.loads(files["modules.json"])][-1] == "glot_modeling.GLOT"
    card = files["README.md"].decode("utf-8")
    assert f'glot_st.load("{REPO_ID}")' in card and "glot_modeling.py" in card
    cache = tmp_path / "hf-cache"
    place_in_hf_cache(files, cache)
    loaded = glot_st.load(REPO_ID, cache_folder=str(cache), device="cpu", local_files_only=True)
    assert isinstance(loaded[1], glot_st.GLOT)
    torch.testing.assert_close(
        loaded.encode(SENTENCES, convert_to_tensor=True), model.encode(SENTENCES, convert_to_tensor=True), rtol=0, atol=1e-6
    )
