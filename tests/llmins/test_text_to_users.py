"""The text-to-users encoder: it learns whom an item's text suits, and saves exactly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.encoders import default_model_path
from models.llmins.text_to_users import (
    TextToUsers,
    TextToUsersConfig,
    _freeze_below,
    _LayerCache,
    _length_batches,
    _load_lm,
    fit_text_to_users,
)
from tests.factories import bag_of_words, planted_dataset, trained_mf

SMALL = TextToUsersConfig(batch_size=32, max_epochs=4, k=30)


@pytest.fixture(scope="module")
def fitted() -> tuple[TextToUsers, np.ndarray]:
    data = planted_dataset()
    users, items = trained_mf()
    return fit_text_to_users(data, bag_of_words(data.item_texts), users, items, SMALL)


def user_auc(table: np.ndarray, users: np.ndarray, pairs: np.ndarray) -> float:
    """Share of (real user, random user) pairs of cold items ranked the right way round
    by the inner products of ``table``'s rows and ``users``."""
    rng = np.random.default_rng(0)
    scores = table @ users.T
    real = scores[pairs[:, 1], pairs[:, 0]]
    other = scores[pairs[:, 1], rng.integers(0, len(users), len(pairs))]
    return float((real > other).mean())


def test_fine_tuning_learns_whom_a_text_suits(fitted) -> None:
    encoder, mapped = fitted
    data = planted_dataset()
    users, _ = trained_mf()
    curve = encoder.info["curve"]
    # Early stopping kept an epoch better than the untrained heads (epoch 0).
    assert encoder.info["best_epoch"] > 0
    assert encoder.info["best_val_recall@30"] > curve[0]["val_recall@30"] + 0.1
    assert encoder.info["best_val_cold_ndcg@20"] > curve[0]["val_cold_ndcg@20"]
    assert all(np.isfinite(point["train_softmax"]) for point in curve[1:])
    # Cold test items were never seen: their real users rank above random users, by the
    # users head (the filter signal) and by the items head (the update's prior) alike.
    assert user_auc(mapped.users, users, data.splits["cold_test"]) > 0.75
    assert user_auc(mapped.items, users, data.splits["cold_test"]) > 0.75
    assert encoder.finetuned and mapped.users.shape == (data.n_items, users.shape[1])
    # The table came through the cached layers (warm and validation items) or the whole
    # encoder (test items): both are what the encoder gives any text.
    some = np.concatenate([data.warm_items[:3], data.cold_val_items[:3], data.cold_test_items[:3]])
    again = encoder.vectors([data.item_texts[i] for i in some])
    np.testing.assert_allclose(mapped.users[some], again.users, atol=1e-5)
    np.testing.assert_allclose(mapped.items[some], again.items, atol=1e-5)


def test_the_frozen_variant_trains_the_head_alone_on_content_vectors() -> None:
    data = planted_dataset()
    users, items = trained_mf()
    content = bag_of_words(data.item_texts)
    frozen, mapped = fit_text_to_users(
        data, content, users, items, replace(SMALL, finetune=False, max_epochs=30)
    )
    assert not frozen.finetuned and frozen.tokenizer is None
    assert user_auc(mapped.users, users, data.splits["cold_test"]) > 0.75
    with pytest.raises(ValueError, match="content vectors"):
        frozen.vectors(["a title"])


@pytest.mark.parametrize("finetune", [True, False])
def test_save_then_load_gives_identical_vectors(fitted, finetune, tmp_path) -> None:
    data = planted_dataset()
    content = bag_of_words(data.item_texts)
    if finetune:
        encoder = fitted[0]
    else:
        users, items = trained_mf()
        encoder, _ = fit_text_to_users(
            data, content, users, items, replace(SMALL, finetune=False, max_epochs=2)
        )
    items = data.cold_test_items[:7]
    texts = [data.item_texts[i] for i in items]
    loaded = TextToUsers.load(encoder.save(tmp_path / "t2u"))
    assert (
        loaded.config == encoder.config and loaded.info["best_epoch"] == encoder.info["best_epoch"]
    )
    for got, expected in zip(
        loaded.vectors(texts, content[items]), encoder.vectors(texts, content[items]), strict=True
    ):
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_only_the_top_layers_train() -> None:
    encoder, _ = _load_lm(default_model_path())
    _freeze_below(encoder, 2)
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(
        name.startswith(("encoder.layer.4.", "encoder.layer.5.")) for name in trainable
    )
    _freeze_below(encoder, None)  # None leaves the model as it is
    assert {name for name, p in encoder.named_parameters() if p.requires_grad} == trainable


def test_the_whole_lm_trains_through_the_encoder_and_maps_as_it_does() -> None:
    """``train_layers=None`` (the GPU check's setting) has no layer cache: every step and
    the final table run the whole encoder, embeddings included."""
    data = planted_dataset()
    users, items = trained_mf()
    pretrained, _ = _load_lm(default_model_path())
    encoder, mapped = fit_text_to_users(
        data,
        bag_of_words(data.item_texts),
        users,
        items,
        replace(SMALL, train_layers=None, max_epochs=1),
        progress=False,
    )
    embeddings = "embeddings.word_embeddings.weight"
    assert not torch.equal(
        encoder.model.encoder.state_dict()[embeddings], pretrained.state_dict()[embeddings]
    )
    assert np.isfinite(encoder.info["curve"][1]["train_softmax"])
    some = np.concatenate([data.warm_items[:3], data.cold_test_items[:3]])
    again = encoder.vectors([data.item_texts[i] for i in some])
    np.testing.assert_allclose(mapped.users[some], again.users, atol=1e-5)


@pytest.mark.parametrize("finetune", [True, False])
def test_refitted_heads_follow_a_retrained_backbone(fitted, finetune) -> None:
    """A refresh retrains the backbone: here its space is turned by a random rotation (the
    same scores, other coordinates). The old heads then rank users at random; refitted on
    the real interactions, they find the cold items' users again, and the LM is shared."""
    data = planted_dataset()
    users, items = trained_mf()
    content = bag_of_words(data.item_texts)
    if finetune:
        encoder = fitted[0]
    else:
        encoder, _ = fit_text_to_users(
            data, content, users, items, replace(SMALL, finetune=False, max_epochs=30)
        )
    turn = np.linalg.qr(np.random.default_rng(0).normal(size=(users.shape[1],) * 2))[0]
    turned_users, turned_items = (
        (users @ turn).astype(np.float32),
        (items @ turn).astype(np.float32),
    )
    real = data.splits["warm_train"]
    cold = data.cold_test_items
    texts = [data.item_texts[i] for i in cold]
    before = encoder.vectors(texts, content[cold])
    refitted = encoder.refitted(
        data.item_texts, content, real, turned_users, turned_items, min_held_out=10
    )
    pairs = data.splits["cold_test"]
    table = np.zeros((data.n_items, users.shape[1]), dtype=np.float32)
    for head in ("users", "items"):
        table[cold] = getattr(before, head)
        assert user_auc(table, turned_users, pairs) < 0.65
        table[cold] = getattr(refitted.vectors(texts, content[cold]), head)
        assert user_auc(table, turned_users, pairs) > 0.75
    record = refitted.info["refit"]
    # Judged on the warm items it left out, about a tenth of them.
    assert (
        record["best_epoch"] > 0
        and 0.05 < record["held_out_items"] / len(np.unique(real[:, 1])) < 0.2
    )
    assert record["best"]["held_out_recall@30"] > record["start"]["held_out_recall@30"]
    assert refitted.info["best_epoch"] == encoder.info["best_epoch"]  # the first record kept
    assert refitted.model.encoder is encoder.model.encoder
    again = encoder.vectors(texts, content[cold])  # the encoder it came from is unchanged
    np.testing.assert_array_equal(again.users, before.users)


def test_refitting_without_held_out_items_trains_the_epochs_it_is_given(fitted) -> None:
    data = planted_dataset()
    users, items = trained_mf()
    refitted = fitted[0].refitted(
        data.item_texts,
        bag_of_words(data.item_texts),
        data.splits["warm_train"],
        users,
        items,
        holdout=0.0,
        epochs_unvalidated=2,
    )
    assert refitted.info["refit"]["epochs_run"] == refitted.info["refit"]["best_epoch"] == 2


def test_length_batches_cover_every_position_once() -> None:
    lengths = np.random.default_rng(0).integers(1, 80, size=1003)
    batches = _length_batches(lengths, 16, np.random.default_rng(1), pool=4)
    together = np.concatenate(batches)
    assert sorted(together.tolist()) == list(range(1003))
    assert max(len(batch) for batch in batches) == 16


def test_cached_lower_layers_give_the_whole_encoders_vectors(fitted) -> None:
    """Training runs the top layers on cached states; that must be the same function."""
    encoder = fitted[0]
    data = planted_dataset()
    items = data.cold_val_items[:9]
    cache = _LayerCache.build(encoder, data.item_texts, items)
    assert cache is not None and len(cache.upper.encoder.layer) == SMALL.train_layers
    with torch.inference_mode():
        cached = encoder.model.from_hidden(cache.upper, *cache.batch(items)).numpy()
    whole = np.concatenate(encoder.vectors([data.item_texts[i] for i in items]), axis=1)
    np.testing.assert_allclose(cached, whole, atol=1e-5)
