"""The model card (``README.md``) that sentence-transformers writes next to a saved GLOT model.

sentence-transformers writes the card at the model level, from ``model.model_card_data`` and a Jinja
template (``model_card_data.template_path``). A module cannot add text to it directly, but every module
gets :meth:`~sentence_transformers.base.modules.Module.on_model_ready` once its model is built (on
``from_backbone``, on ``load`` and on ``SentenceTransformer(..., trust_remote_code=True)``). ``GLOT`` calls
:func:`attach_model_card` there, which turns the model's default card data into a
:class:`GLOTModelCardData`:

- the install step says ``pip install -U sentence-transformers glot-st``;
- a ``### GLOT pooling`` section (after *Full Model Architecture*) says that ``glot-st`` is needed, how to
  load the model, and lists every GLOT setting;
- the usage snippet loads with ``trust_remote_code=True`` (sentence-transformers 6 imports a module class
  from outside its own package only with it);
- the ``glot-st`` tag is added;
- when the model was trained with the training kit (or anyone called :func:`set_training_info`), a
  ``#### Training`` part states the task, the validation metric and its value.

The GLOT template is derived at run time from the template of the installed sentence-transformers, so the
rest of the card stays whatever that version writes.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from glot_st._compat import SentenceTransformerModelCardData

logger = logging.getLogger(__name__)

__all__ = ["GLOTModelCardData", "attach_model_card", "get_training_info", "glot_card_section", "set_training_info"]

GLOT_TAG = "glot-st"
GLOT_CONFIG_FILE = "glot_config.json"
PLACEHOLDER_ID = "sentence_transformers_model_id"
MODELING_FILE = "glot_modeling.py"
TRAINING_INFO_ATTRIBUTE = "glot_training_info"
_SECTION_VARIABLE = "{{ glot_section }}"
_INSTALL_LINE = "pip install -U sentence-transformers\n"
_INSTALL_INTRO = "First install the Sentence Transformers library:"
_ARCHITECTURE_BLOCK = "### Full Model Architecture\n\n```\n{{ model_string }}\n```\n"
_TEMPLATE_DIR: Path | None = None


class GLOTModelCardData(SentenceTransformerModelCardData):
    """Card data of a model holding GLOT: the sentence-transformers card plus the GLOT section.

    It adds no dataclass fields (a model's existing card data can be switched to it in place) and pickles
    like its parent (multi-process encoding sends the model to the workers).
    """

    @property
    def template_path(self) -> Path:  # type: ignore[override]
        """The GLOT template derived from the base template (the dataclass field keeps the base path)."""
        base = self.__dict__.get("template_path") or SentenceTransformerModelCardData.template_path
        return _derived_template(Path(base))

    @template_path.setter
    def template_path(self, value: Path) -> None:
        self.__dict__["template_path"] = value

    def get_model_specific_metadata(self) -> dict[str, Any]:
        metadata = super().get_model_specific_metadata()
        if self.model is not None:
            metadata["glot_section"] = glot_card_section(self.model, self.model_id)
        return metadata

    def generate_usage_snippet(self) -> str:
        return _with_trust_remote_code(super().generate_usage_snippet())


def attach_model_card(model: Any) -> None:
    """Give ``model`` the GLOT model card (idempotent).

    The default ``SentenceTransformerModelCardData`` is switched in place to :class:`GLOTModelCardData`
    (every value the user or the trainer set is kept). Card data of any other class (a user's own subclass)
    is left alone, apart from the ``glot-st`` tag.
    """
    card = getattr(model, "model_card_data", None)
    if card is None:
        return
    if type(card) is SentenceTransformerModelCardData:
        card.__class__ = GLOTModelCardData
    elif not isinstance(card, GLOTModelCardData):
        logger.info("model_card_data is a %s; the model card gets no GLOT section", type(card).__name__)
    if hasattr(card, "add_tags"):
        card.add_tags(GLOT_TAG)


def set_training_info(
    model: Any,
    *,
    task: str,
    metric_name: str | None = None,
    metric_value: float | None = None,
    eval_split: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record how the model was trained, for the ``#### Training`` part of its model card.

    Stored on ``model.model_card_data`` (it goes with the model, is pickled with it, and is written into
    ``README.md`` by the next ``save`` / ``push_to_hub``); a second call replaces the first.

    Args:
        model: a ``SentenceTransformer`` holding a GLOT module.
        task: the training task, e.g. ``"stsb"`` or ``"sst2 (single-sentence classification)"``.
        metric_name: the validation metric, e.g. ``"spearman"``; ``None`` when nothing was validated.
        metric_value: its value for the weights that were kept (float).
        eval_split: the split the metric was computed on, e.g. ``"validation"``.
        details: further ``setting -> value`` rows (epochs, learning rate, head, ...), shown in a table.
    """
    card = getattr(model, "model_card_data", None)
    if card is None:
        raise ValueError(f"{type(model).__name__} has no model_card_data to hold the training information")
    info = {
        "task": str(task),
        "metric_name": None if metric_name is None else str(metric_name),
        "metric_value": None if metric_value is None else float(metric_value),
        "eval_split": None if eval_split is None else str(eval_split),
        "details": dict(details or {}),
    }
    setattr(card, TRAINING_INFO_ATTRIBUTE, info)


def get_training_info(model: Any) -> dict[str, Any] | None:
    """The training information :func:`set_training_info` recorded on ``model`` (a dict), or ``None``."""
    return getattr(getattr(model, "model_card_data", None), TRAINING_INFO_ATTRIBUTE, None)


def _training_lines(info: dict[str, Any]) -> list[str]:
    lines = ["", "#### Training", "", f"Task: `{_format_value(info['task'])}`."]
    if info.get("metric_name") is not None:
        value = info.get("metric_value")
        where = f" on the `{info['eval_split']}` split" if info.get("eval_split") else ""
        shown = "n/a" if value is None else f"{value:.4f}"
        lines.append(f"Validation metric{where}: `{_format_value(info['metric_name'])}` = {shown}.")
    else:
        lines.append("No validation metric was computed.")
    if info.get("details"):
        lines += ["", "| setting | value |", "| --- | --- |"]
        lines += [f"| `{key}` | `{_format_value(value)}` |" for key, value in info["details"].items()]
    return lines


def glot_card_section(model: Any, model_id: str | None = None) -> str:
    """Markdown of the ``### GLOT pooling`` section: install, load, and every GLOT module's settings.

    A GLOT module is recognised by its ``config_file_name`` (``glot_config.json``), so this file needs no
    import of :mod:`glot_st.module` (which imports this one).
    """
    repo = model_id or PLACEHOLDER_ID
    glots = [
        (name, module)
        for name, module in model.named_modules()
        if getattr(type(module), "config_file_name", None) == GLOT_CONFIG_FILE
    ]
    lines = [
        "### GLOT pooling",
        "",
        "The sentence embedding is pooled by **GLOT** (Mantri et al., *Towards Improved Sentence Representations "
        "using Token Graphs*, ICLR 2026): the frozen encoder's token states become a token-similarity graph, a "
        "few message-passing layers refine them, and a learned attention readout weighs the tokens.",
        "",
        "The `GLOT` module is provided by the [`glot-st`](https://pypi.org/project/glot-st/) package. With it "
        "installed, `glot_st.load` uses the installed classes and runs no code from this repository (it refuses "
        "a model whose `modules.json` names any class outside sentence-transformers and glot-st):",
        "",
        "```bash",
        "pip install glot-st",
        "```",
        "",
        "```python",
        "import glot_st",
        "",
        f'model = glot_st.load("{repo}")',
        "```",
        "",
        "Models saved with `glot_st.save` / `glot_st.push_to_hub` also carry the module's code in "
        f"`{MODELING_FILE}` (generated from the glot-st sources), so they load with sentence-transformers alone; "
        "`trust_remote_code=True` then runs that file:",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{repo}", trust_remote_code=True)',
        "```",
    ]
    info = get_training_info(model)
    if info is not None:
        lines += _training_lines(info)
    for name, module in glots:
        config = module.get_config_dict()
        title = "GLOT configuration" if len(glots) == 1 else f"GLOT configuration (module `{name}`)"
        lines += [
            "",
            f"#### {title}",
            "",
            f"Output dimensionality: {module.get_embedding_dimension()}; parameters: "
            f"{sum(p.numel() for p in module.parameters()):,}.",
            "",
            "| setting | value |",
            "| --- | --- |",
        ]
        lines += [f"| `{key}` | `{_format_value(value)}` |" for key, value in config.items()]
    return "\n".join(lines) + "\n"


def _format_value(value: Any) -> str:
    return "None" if value is None else str(value).replace("|", "\\|")


def _with_trust_remote_code(snippet: str) -> str:
    """Add ``trust_remote_code=True`` to the snippet's ``model = Class("id")`` line."""
    return re.sub(
        r'^(model = \w+\("[^"\n]*")\)$',
        r"\1, trust_remote_code=True)  # needs `pip install glot-st`",
        snippet,
        count=1,
        flags=re.MULTILINE,
    )


def _derived_template(base: Path) -> Path:
    """Write (once per process and base template) the GLOT version of ``base``; return its path."""
    global _TEMPLATE_DIR
    text = base.read_text(encoding="utf-8")
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
    if _TEMPLATE_DIR is None or not _TEMPLATE_DIR.is_dir():
        _TEMPLATE_DIR = Path(tempfile.mkdtemp(prefix="glot_st_card_"))
        atexit.register(shutil.rmtree, _TEMPLATE_DIR, True)
    target = _TEMPLATE_DIR / f"model_card_template_{digest}.md"
    if not target.is_file():
        target.write_text(glot_template(text), encoding="utf-8")
    return target


def glot_template(base_text: str) -> str:
    """The GLOT card template from the text of a sentence-transformers template."""
    text = base_text.replace(_INSTALL_LINE, "pip install -U sentence-transformers glot-st\n", 1)
    text = text.replace(
        _INSTALL_INTRO, "First install the Sentence Transformers library and `glot-st` (the GLOT pooling module):", 1
    )
    section = "\n" + _SECTION_VARIABLE + "\n"
    if _ARCHITECTURE_BLOCK in text:
        return text.replace(_ARCHITECTURE_BLOCK, _ARCHITECTURE_BLOCK + section, 1)
    if "\n## Usage" in text:  # a template without the architecture block: put the section before Usage
        return text.replace("\n## Usage", section + "\n## Usage", 1)
    return text + section
