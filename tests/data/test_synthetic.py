import math

import pytest
import torch

from lit_d2l.cli.main import main
from lit_d2l.data import GaussianClusters, HighDimLinearData, PolynomialData, SyntheticRegressionData
from lit_d2l.errors import ConfigError
from tests.conftest import LINEAR_CONFIG, linear_fit_args
from tests.test_cli import QUIET, assert_one_error_line


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
        ({"noise": -1.0}, "noise must be a finite number >= 0"),
        ({"noise": math.nan}, "noise must be a finite number >= 0, got nan"),
        ({"noise": math.inf}, "noise must be a finite number >= 0, got inf"),
        ({"w": [2.0, math.nan]}, r"data.w must be finite numbers, got \[2.0, nan\]"),
        ({"w": [math.inf]}, "data.w must be finite numbers"),
        ({"b": math.inf}, "data.b must be a finite number, got inf"),
        ({"b": -math.inf}, "data.b must be a finite number, got -inf"),
        ({"b": math.nan}, "data.b must be a finite number, got nan"),
        ({"num_val": 0}, r"data.num_val must be > 0 \(the validation split\), got 0"),
        ({"num_val": -1}, "data.num_val and data.num_test must be >= 0"),
        ({"num_test": -1}, "data.num_val and data.num_test must be >= 0"),
        ({"num_train": 3, "num_val": 1, "num_folds": 5}, r"num_train \+ data.num_val \(4\) must be >= data.num_folds"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        SyntheticRegressionData(**kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("cls", [HighDimLinearData, GaussianClusters])
@pytest.mark.parametrize(
    ("kwargs", "message"), [({"num_val": 0}, "num_val must be > 0"), ({"num_train": 0}, "num_train")]
)
def test_every_synthetic_dataset_refuses_empty_splits(cls, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(**kwargs)


def test_no_validation_examples_is_fine_under_k_fold() -> None:
    data = SyntheticRegressionData(num_train=10, num_val=0, num_folds=5, fold=4)
    assert len(data.splits["train"][0]) == 8 and len(data.splits["val"][0]) == 2


def test_polynomial_defaults_are_the_second_editions_scaled_powers() -> None:
    data = PolynomialData(degree=4, num_train=500)
    X, y = data.splits["train"]
    x = X[:, 1]
    assert torch.equal(X[:, 0], torch.ones(500))
    assert torch.allclose(X[:, 2:], torch.stack([x**2 / 2, x**3 / 6], dim=1), rtol=1e-5, atol=1e-6)
    w, b = data.true_params()
    assert w.tolist() == pytest.approx([5.0, 1.2, -3.4, 5.6]) and b == 0.0
    residual = y.reshape(-1) - X @ w
    assert residual.std().item() == pytest.approx(0.1, rel=0.15)


def test_polynomial_first_edition_raw_powers_from_x_with_a_bias() -> None:
    data = PolynomialData(
        degree=3, max_degree=3, features="raw", first_power=1, true_w=[1.2, -3.4, 5.6], true_b=5.0, num_train=500
    )
    X, y = data.splits["train"]
    x = X[:, 0]
    assert torch.allclose(X[:, 1:], torch.stack([x**2, x**3], dim=1), rtol=1e-5, atol=1e-6)
    w, b = data.true_params()
    assert w.tolist() == pytest.approx([1.2, -3.4, 5.6]) and b == 5.0
    residual = y.reshape(-1) - (X @ w + b)
    assert residual.std().item() == pytest.approx(0.1, rel=0.15)
    assert residual.mean().abs().item() < 0.02


def test_polynomial_true_params_are_those_of_the_features_seen() -> None:
    data = PolynomialData(degree=1, max_degree=3, features="raw", first_power=1, true_w=[1.2, -3.4, 5.6], true_b=5.0)
    assert data.num_inputs == 1
    w, b = data.true_params()
    assert w.tolist() == pytest.approx([1.2]) and b == 5.0
    assert PolynomialData(degree=6, true_w=[1.0]).true_params()[0].tolist() == [1.0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": "cubed"}, r"data.features must be 'factorial' .* or 'raw'"),
        ({"first_power": -1}, "data.first_power must be >= 0"),
        ({"true_w": [1.0] * 5, "max_degree": 4}, "data.true_w has 5 weights .* raise data.max_degree"),
        ({"true_b": 5.0}, r"data.true_b must be 0 when data.first_power is 0 .* data.first_power 1"),
        ({"noise": -0.1}, "data.noise must be a finite number >= 0"),
        ({"noise": math.nan}, "data.noise must be a finite number >= 0"),
        ({"true_w": [1.0, math.inf]}, "data.true_w must be finite numbers"),
        ({"true_b": math.nan, "first_power": 1}, "data.true_b must be a finite number"),
        ({"num_val": 0}, "data.num_val must be > 0"),
        ({"degree": 21}, r"data.degree must be in \[1, max_degree=20\]"),
    ],
)
def test_bad_polynomial_settings_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PolynomialData(**kwargs)


@pytest.mark.parametrize(
    "override",
    [
        ["--data.w", "[.nan]"],
        ["--data.b", ".inf"],
        ["--data.noise=-.inf"],
        ["--data.noise", ".nan"],
        ["--data.num_val", "0"],
    ],
)
def test_bad_data_settings_through_the_cli_record_nothing(override, tracking_uri, client, experiment, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *linear_fit_args(tracking_uri, experiment, *override)])
    assert_one_error_line(exit_info.value.code, capsys.readouterr().err, r"^lit-d2l: error: data\.(w|b|noise|num_val) ")
    assert client.get_experiment_by_name(experiment) is None


def test_testing_on_an_empty_test_split_records_no_run(tmp_path, tracking_uri, client, experiment, capsys) -> None:
    stub = tmp_path / "weights.ckpt"  # weights are checked first; the empty split must still be found
    torch.save({"state_dict": {}}, stub)
    argv = ["test", "--config", str(LINEAR_CONFIG), "--data.num_test", "0", "--ckpt_path", str(stub)]
    argv += ["--tracking.uri", tracking_uri, "--tracking.experiment", experiment, *QUIET]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    pattern = r"the test split is empty; give data\.num_test a positive size"
    assert_one_error_line(exit_info.value.code, capsys.readouterr().err, pattern)
    assert client.get_experiment_by_name(experiment) is None
