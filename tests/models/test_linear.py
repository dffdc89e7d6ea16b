import lightning as L
import numpy as np
import pytest
import torch

from lit_d2l.data import PolynomialData, SyntheticRegressionData
from lit_d2l.errors import ConfigError
from lit_d2l.models import LinearRegression, LinearRegressionScratch, MinibatchSGD, closed_form_solution
from tests.conftest import seed


def fit(model: L.LightningModule, data: SyntheticRegressionData, epochs: int, trainer_kwargs: dict) -> L.Trainer:
    trainer = L.Trainer(max_epochs=epochs, logger=False, **trainer_kwargs)
    trainer.fit(model, data)
    return trainer


@pytest.mark.parametrize("model_class", [LinearRegressionScratch, LinearRegression])
# Three inputs: also tests/tracking/test_run_record.py (the scratch model, through the config) in the fast suite.
@pytest.mark.parametrize(("w", "b"), [([2.0, -3.4], 4.2), pytest.param([1.5, -2.0, 0.7], -1.0, marks=pytest.mark.slow)])
def test_both_linear_models_recover_the_generating_parameters(model_class, w, b, quiet_trainer) -> None:
    seed(0)
    data = SyntheticRegressionData(w=w, b=b)
    model = model_class(lr=0.03)
    fit(model, data, epochs=10, trainer_kwargs=quiet_trainer)
    learned_w, learned_b = model.learned()
    assert torch.allclose(learned_w, torch.tensor(w), atol=0.01)
    assert learned_b.item() == pytest.approx(b, abs=0.01)
    assert model.fit_errors["param_err/w"] < 0.01
    assert model.fit_errors["closed_form_gap"] < 0.01


def test_three_d2l_epochs_give_the_books_errors(quiet_trainer) -> None:
    """D2L 3.4 (½ squared loss, lr 0.03, batch 32, 3 epochs) prints errors of about 0.1-0.25; 3.5 about 0.01."""
    seed(0)
    scratch = LinearRegressionScratch(lr=0.03)
    fit(scratch, SyntheticRegressionData(), epochs=3, trainer_kwargs=quiet_trainer)
    assert 0.02 < scratch.fit_errors["param_err/b"] < 0.5
    seed(0)
    concise = LinearRegression(lr=0.03)
    fit(concise, SyntheticRegressionData(), epochs=3, trainer_kwargs=quiet_trainer)
    assert concise.fit_errors["param_err/b"] < 0.03
    assert concise.fit_errors["param_err/b"] < scratch.fit_errors["param_err/b"] / 5


def test_closed_form_solves_least_squares_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(200, 3, generator=generator, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3
    w, b = closed_form_solution(X, y)
    assert torch.allclose(w, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), atol=1e-10)
    assert b.item() == pytest.approx(0.3, abs=1e-10)


def test_a_constant_feature_plays_the_intercept_instead_of_sharing_it() -> None:
    """With an x⁰ = 1 column, b* = 0 and that column's weight carries the whole constant (not half of it)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(100, 1, generator=generator, dtype=torch.float64)
    X = torch.cat([torch.ones_like(x), x, x**2], dim=1)
    w, b = closed_form_solution(X, X @ torch.tensor([5.0, 1.2, -3.4], dtype=torch.float64))
    assert torch.allclose(w, torch.tensor([5.0, 1.2, -3.4], dtype=torch.float64), atol=1e-10)
    assert b.item() == 0.0
    zero_column = torch.cat([torch.zeros_like(x), x], dim=1)  # a constant 0 cannot play the bias
    w, b = closed_form_solution(zero_column, 2 * x.reshape(-1) + 0.3)
    assert w[1].item() == pytest.approx(2.0, abs=1e-10) and b.item() == pytest.approx(0.3, abs=1e-10)


@pytest.mark.parametrize("num_train", [10, 100])
def test_closed_form_matches_numpy_on_twenty_polynomial_features(num_train: int) -> None:
    """Degree 20 (condition number ~1e16): the SVD solver agrees with float64 numpy.linalg.lstsq."""
    X, y = PolynomialData(degree=20, num_train=num_train).splits["train"][:2]
    w, b = closed_form_solution(X, y)
    expected = np.linalg.lstsq(X.double().numpy(), y.double().numpy().reshape(-1), rcond=None)[0]
    assert b.item() == 0.0
    assert np.linalg.norm(w.numpy() - expected) <= 1e-6 * np.linalg.norm(expected)


def test_minibatch_sgd_is_the_written_out_update() -> None:
    param = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    param.grad = torch.tensor([0.5, -1.0])
    MinibatchSGD([param], lr=0.1).step()
    assert torch.allclose(param.detach(), torch.tensor([0.95, 2.1]))


def test_scratch_loss_is_half_squared_error() -> None:
    model = LinearRegressionScratch(num_inputs=1)
    assert model.loss(torch.tensor([[3.0]]), torch.tensor([1.0])).item() == pytest.approx(2.0)


def test_shape_comes_from_the_data_when_not_given(quiet_trainer) -> None:
    model = LinearRegressionScratch()
    fit(model, SyntheticRegressionData(w=[1.0, 2.0, 3.0, 4.0], num_train=64, num_val=32), 1, quiet_trainer)
    assert model.w.shape == (4, 1)


@pytest.mark.parametrize("model_class", [LinearRegressionScratch, LinearRegression])
def test_non_positive_learning_rate_is_a_config_error(model_class) -> None:
    with pytest.raises(ConfigError, match="lr must be > 0"):
        model_class(lr=0.0)
