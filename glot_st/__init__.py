"""glot-st: GLOT graph pooling (token graphs + GNN + attention readout) as a sentence-transformers module."""

from glot_st.builder import from_backbone, load
from glot_st.cache import build_cache, open_cache
from glot_st.graph import build_token_graph
from glot_st.module import GLOT
from glot_st.training import load_head, train_cached

__version__ = "0.1.0"

__all__ = [
    "GLOT",
    "__version__",
    "build_cache",
    "build_token_graph",
    "from_backbone",
    "load",
    "load_head",
    "open_cache",
    "train_cached",
]
