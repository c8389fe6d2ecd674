"""glot-st: GLOT graph pooling (token graphs + GNN + attention readout) as a sentence-transformers module.

``import glot_st`` loads only what encoding needs (the modules, graph construction, kernels, loading). The
training kit is :mod:`glot_st.train`; the experiment bench (stress test, GLUE-lite, mteb) is
:mod:`glot_st.bench`; the command line is :mod:`glot_st.cli`.
"""

from glot_st.baselines import AdaPool
from glot_st.builder import from_backbone, load, push_to_hub, save
from glot_st.graph import build_token_graph
from glot_st.model_card import set_training_info
from glot_st.module import AUTHORS_GLOT, GLOT
from glot_st.onnx_export import export_onnx
from glot_st.seeding import reinitialize, seeded

__version__ = "0.2.0"

__all__ = [
    "AUTHORS_GLOT",
    "GLOT",
    "AdaPool",
    "__version__",
    "build_token_graph",
    "export_onnx",
    "from_backbone",
    "load",
    "push_to_hub",
    "reinitialize",
    "save",
    "seeded",
    "set_training_info",
]
