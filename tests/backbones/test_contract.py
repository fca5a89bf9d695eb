"""One contract suite over every backbone (PEFT/Gorse style): the same checks for each."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from models.backbones import BACKBONES, BackboneConfig, build_backbone
from models.evaluation import evaluate
from models.training import TrainConfig, train_bpr, warm_validator
from tests.factories import planted_dataset


@pytest.fixture(scope="module")
def data():
    return planted_dataset()


def build(name: str, data, dim: int = 16):
    torch.manual_seed(0)
    train = data.splits["warm_train"]
    return build_backbone(name, data.n_users, data.n_items, train, BackboneConfig(dim=dim))


@pytest.mark.parametrize("name", BACKBONES)
def test_shapes_and_finite_scores(name: str, data) -> None:
    model = build(name, data)
    users, items = model.export_embeddings()
    assert users.shape[0] == data.n_users and items.shape[0] == data.n_items
    assert users.shape[1] == items.shape[1] and users.dtype == np.float32
    scores = model.full_scores(torch.arange(5))
    assert scores.shape == (5, data.n_items)
    assert torch.isfinite(scores).all()
    np.testing.assert_allclose(scores.numpy(), users[:5] @ items.T, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BACKBONES)
def test_loss_falls_in_a_few_steps(name: str, data) -> None:
    model = build(name, data)
    train = data.splits["warm_train"]
    users, positives = torch.from_numpy(train[:, 0]), torch.from_numpy(train[:, 1])
    negatives = torch.from_numpy(np.random.default_rng(0).integers(data.n_items, size=len(train)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        loss = model.calculate_loss(users, positives, negatives)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.75 * losses[0]


@pytest.mark.parametrize("name", BACKBONES)
def test_save_then_load_gives_identical_scores(name: str, data) -> None:
    """A trained model's state restores its scores into a model built from another seed."""
    model = build(name, data)
    train = data.splits["warm_train"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    negatives = np.random.default_rng(0).integers(data.n_items, size=len(train))
    for _ in range(5):
        loss = model.calculate_loss(
            torch.from_numpy(train[:, 0]), torch.from_numpy(train[:, 1]),
            torch.from_numpy(negatives),
        )  # fmt: skip
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(1)
    clone = build_backbone(name, data.n_users, data.n_items, train, BackboneConfig(dim=16))
    a, b = model.export_embeddings(), clone.export_embeddings()
    assert not np.allclose(a[0] @ a[1].T, b[0] @ b[1].T)  # loading is what must restore them
    clone.load_state_dict(torch.load(buffer))
    b = clone.export_embeddings()
    np.testing.assert_array_equal(a[0] @ a[1].T, b[0] @ b[1].T)


@pytest.mark.parametrize("name", BACKBONES)
def test_training_learns_planted_preferences(name: str, data) -> None:
    """Trained with early stopping, every backbone ranks warm items far better than chance."""
    model = build(name, data, dim=32)
    untrained = evaluate(data, *model.export_embeddings(), stage="test", tasks=("warm",))

    validate = warm_validator(data)

    result = train_bpr(
        model,
        data.splits["warm_train"],
        validate,
        TrainConfig(lr=1e-2, batch_size=256, max_epochs=40, eval_every=2, patience=5),
        progress=False,
    )
    trained = evaluate(data, *model.export_embeddings(), stage="test", tasks=("warm",))
    assert result.best_epoch > 0
    assert trained["warm"]["recall@20"] > untrained["warm"]["recall@20"] + 0.3
    # The model was left at its best validation state.
    assert validate(model) == pytest.approx(result.best_score)


def test_unknown_backbone_is_rejected(data) -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        build("transformer", data)
