"""The packaged all-MiniLM-L6-v2 loads offline and gives unit vectors where near texts are nearer."""

from __future__ import annotations

import numpy as np

from models.embeddings import embed
from tasks.monitors import mean_pairwise_similarity
from tasks.select import diverse_indices


def test_embeddings_are_unit_length_and_cluster_by_meaning() -> None:
    texts = [
        "3 + 4 = 7. The answer is 7.",
        "3 + 4 = 7. So the answer is 7.",
        "The cat sat on the mat.",
        "A cat was sitting on the mat.",
    ]
    vectors = embed(texts)
    assert vectors.shape == (4, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] and sims[2, 3] > sims[1, 3]
    assert len({i // 2 for i in diverse_indices(vectors, 2, seed=0)}) == 2  # one per topic
    assert mean_pairwise_similarity(vectors[:2]) > mean_pairwise_similarity(vectors[1:3])
    assert embed([]).shape == (0, 384)
