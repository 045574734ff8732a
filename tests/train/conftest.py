"""Fixtures shared by the training-stage tests."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def real_reviews(imdb_tarball) -> list[str]:
    """Real raw IMDB reviews: the 40 longest (up to 14,000 characters) and 40 others."""
    from tfsent.config import DataConfig
    from tfsent.data import read_source

    texts = read_source(str(imdb_tarball), DataConfig())["train"].texts
    longest = sorted(texts, key=len)[-40:]
    others = [texts[i] for i in np.random.default_rng(0).choice(len(texts), 40, replace=False)]
    return longest + others
