"""Mean-pooled content vectors from the packaged MiniLM, batching and the disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from models.encoders import MeanPoolEncoder, default_model_path, encode_cached


@pytest.fixture(scope="module")
def encoder() -> MeanPoolEncoder:
    return MeanPoolEncoder(batch_size=2)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_default_model_comes_from_site_packages() -> None:
    path = default_model_path()
    assert "site-packages" in str(path)
    assert (path / "config.json").is_file()


def test_vectors_carry_meaning(encoder: MeanPoolEncoder) -> None:
    texts = [
        "Protein folding and gene expression in yeast cells",
        "Gene regulation of protein synthesis in the cell",
        "Stock market prices and financial trading strategies",
    ]
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, encoder.dim) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2


def test_batching_and_order_do_not_change_vectors(encoder: MeanPoolEncoder) -> None:
    texts = ["a short title", "a considerably longer title about graph neural networks", "x"]
    one_batch = MeanPoolEncoder(batch_size=8)
    np.testing.assert_allclose(encoder.encode(texts), one_batch.encode(texts), atol=1e-5)
    reversed_vectors = encoder.encode(texts[::-1])
    np.testing.assert_allclose(encoder.encode(texts), reversed_vectors[::-1], atol=1e-5)


def test_cache_round_trip(encoder: MeanPoolEncoder, tmp_path, monkeypatch) -> None:
    texts = ["first paper", "second paper"]
    written = encode_cached(encoder, texts, tmp_path, progress=False)
    assert len(list(tmp_path.glob("content-*.npy"))) == 1

    def must_not_encode(*args, **kwargs):
        raise AssertionError("the cached vectors should have been read")

    monkeypatch.setattr(encoder, "encode", must_not_encode)
    np.testing.assert_array_equal(encode_cached(encoder, texts, tmp_path), written)
    with pytest.raises(AssertionError):
        encode_cached(encoder, ["other texts miss the cache"], tmp_path)


def test_not_a_model_folder(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model folder"):
        MeanPoolEncoder(tmp_path)
