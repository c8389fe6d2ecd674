"""Every sentence-transformers 5 / 6 difference glot-st depends on, in one place.

sentence-transformers 6 moved its module classes to ``sentence_transformers.base.modules`` /
``sentence_transformers.sentence_transformer.*``; version 5 keeps them in ``sentence_transformers.models``.
The rest of the package imports these names from here.
"""

from __future__ import annotations

try:  # sentence-transformers 6
    from sentence_transformers.base.modules import Module, Pooling, Transformer
    from sentence_transformers.sentence_transformer.model_card import SentenceTransformerModelCardData

    ST_MAJOR = 6
except ImportError:  # sentence-transformers 5
    from sentence_transformers.model_card import SentenceTransformerModelCardData
    from sentence_transformers.models import Module, Pooling, Transformer

    ST_MAJOR = 5

HAS_MODEL_READY_HOOK = hasattr(Module, "on_model_ready")  # sentence-transformers 5 has no on_model_ready

__all__ = [
    "HAS_MODEL_READY_HOOK",
    "ST_MAJOR",
    "Module",
    "Pooling",
    "SentenceTransformerModelCardData",
    "Transformer",
]
