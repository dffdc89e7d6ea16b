import pytest
import torch

from lit_d2l.data import SyntheticRegressionData
from lit_d2l.data.splits import holdout_indices, kfold_indices
from lit_d2l.errors import ConfigError


@pytest.mark.parametrize("val_size", [100, 0.1, 37])
def test_holdout_is_disjoint_covering_exact_and_stratified(val_size) -> None:
    labels = torch.arange(1000) % 10
    train, val = holdout_indices(labels, val_size, seed=0)
    expected = round(val_size * 1000) if isinstance(val_size, float) else val_size
    assert len(val) == expected
    assert len(set(train.tolist()) & set(val.tolist())) == 0
    assert sorted(train.tolist() + val.tolist()) == list(range(1000))
    per_class = torch.bincount(labels[val], minlength=10)
    assert per_class.max() - per_class.min() <= 1, per_class


def test_holdout_is_seeded() -> None:
    labels = torch.arange(200) % 4
    assert torch.equal(holdout_indices(labels, 20, seed=1)[1], holdout_indices(labels, 20, seed=1)[1])
    assert not torch.equal(holdout_indices(labels, 20, seed=1)[1], holdout_indices(labels, 20, seed=2)[1])


@pytest.mark.parametrize("val_size", [0, 1000, 1.0])
def test_holdout_must_leave_both_sides(val_size) -> None:
    with pytest.raises(ConfigError, match="val_size"):
        holdout_indices(torch.zeros(1000), val_size, seed=0)


@pytest.mark.parametrize(("n", "k"), [(10, 2), (103, 5), (7, 7)])
def test_kfold_validation_folds_are_disjoint_and_cover_exactly_once(n: int, k: int) -> None:
    val_folds = []
    for fold in range(k):
        train, val = kfold_indices(n, k, fold, seed=3)
        assert len(set(train.tolist()) & set(val.tolist())) == 0
        assert sorted(train.tolist() + val.tolist()) == list(range(n))
        val_folds.append(val)
    everything = torch.cat(val_folds).tolist()
    assert sorted(everything) == list(range(n)), "each example validates exactly once"
    assert max(map(len, val_folds)) - min(map(len, val_folds)) <= 1


def test_datamodule_folds_pool_train_and_val_and_keep_test() -> None:
    def fold(f: int) -> SyntheticRegressionData:
        return SyntheticRegressionData(num_train=80, num_val=20, num_test=10, num_folds=5, fold=f)

    folds = [fold(f) for f in range(5)]
    val_rows = torch.cat([d.splits["val"][0] for d in folds])
    plain = SyntheticRegressionData(num_train=80, num_val=20, num_test=10)
    pool = torch.cat([plain.splits["train"][0], plain.splits["val"][0]])
    assert len(val_rows) == 100
    assert torch.equal(val_rows[val_rows[:, 0].argsort()], pool[pool[:, 0].argsort()])
    assert all(len(d.splits["train"][0]) == 80 for d in folds)
    assert all(torch.equal(d.splits["test"][0], plain.splits["test"][0]) for d in folds)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"num_folds": 0}, "num_folds"), ({"num_folds": 3, "fold": 3}, "fold")]
)
def test_bad_fold_settings(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        SyntheticRegressionData(**kwargs)
