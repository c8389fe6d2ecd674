"""The main job (``make demo``): compose MiniLM + GLOT, encode, save, reload and compare."""

from __future__ import annotations

import os
import tempfile

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import glot_st  # noqa: E402
from glot_st.resources import minilm_path  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    model = glot_st.from_backbone(minilm_path())
    sentences = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell today."]
    embeddings = model.encode(sentences, convert_to_tensor=True)
    print(f"embeddings {tuple(embeddings.shape)}; cosine similarities:")
    print(model.similarity(embeddings, embeddings))
    with tempfile.TemporaryDirectory() as folder:
        model.save(folder)
        reloaded = glot_st.load(folder)
        again = reloaded.encode(sentences, convert_to_tensor=True)
    print(f"reloaded model gives identical embeddings: {torch.equal(embeddings, again)}")


if __name__ == "__main__":
    main()
