"""glot-st: GLOT graph pooling (token graphs + GNN + attention readout) as a sentence-transformers module."""

from glot_st.builder import from_backbone, load
from glot_st.graph import build_token_graph
from glot_st.module import GLOT

__version__ = "0.1.0"

__all__ = ["GLOT", "__version__", "build_token_graph", "from_backbone", "load"]
