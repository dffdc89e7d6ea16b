import pytest
import torch

from lit_d2l.data import SyntheticRegressionData
from lit_d2l.errors import ConfigError


def test_shapes_and_split_sizes() -> None:
    data = SyntheticRegressionData(w=[1.0, 2.0, 3.0], num_train=50, num_val=20, num_test=10)
    sizes = {name: (X.shape, y.shape) for name, (X, y) in data.splits.items()}
    assert sizes == {
        "train": ((50, 3), (50, 1)),
        "val": ((20, 3), (20, 1)),
        "test": ((10, 3), (10, 1)),
    }
    assert data.num_inputs == 3


def test_targets_follow_the_generating_parameters() -> None:
    data = SyntheticRegressionData(w=[2.0, -3.4], b=4.2, noise=0.01, num_train=500)
    X, y = data.splits["train"]
    residual = y.reshape(-1) - (X @ torch.tensor([2.0, -3.4]) + 4.2)
    assert residual.std().item() == pytest.approx(0.01, rel=0.15)
    assert residual.mean().abs().item() < 0.003


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = (SyntheticRegressionData(seed=s) for s in (7, 7, 8))
    assert torch.equal(a.splits["train"][0], b.splits["train"][0])
    assert torch.equal(a.splits["val"][1], b.splits["val"][1])
    assert not torch.equal(a.splits["train"][0], c.splits["train"][0])


def test_splits_are_disjoint_draws() -> None:
    data = SyntheticRegressionData(num_train=100, num_val=100, num_test=100)
    rows = torch.cat([data.splits[s][0] for s in ("train", "val", "test")])
    assert len(torch.unique(rows, dim=0)) == 300


def test_train_batches_cover_the_training_set_once_per_epoch() -> None:
    data = SyntheticRegressionData(num_train=100, batch_size=32)
    batches = list(data.train_dataloader())
    assert [len(X) for X, _ in batches] == [32, 32, 32, 4]
    seen = torch.cat([X for X, _ in batches])
    assert torch.equal(seen[seen[:, 0].argsort()], data.splits["train"][0][data.splits["train"][0][:, 0].argsort()])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_train": 0}, "num_train must be > 0"),
        ({"batch_size": 0}, "batch_size must be > 0"),
        ({"w": []}, "at least one weight"),
        ({"noise": -1.0}, "noise must be >= 0"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SyntheticRegressionData(**kwargs)


def test_an_empty_split_has_no_batches_and_says_how_to_fix_it() -> None:
    data = SyntheticRegressionData(num_test=0)
    with pytest.raises(ConfigError, match="num_test"):
        data.test_dataloader()
