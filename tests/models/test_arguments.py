"""The shared optimisation settings (lr, momentum, weight_decay, l2) refuse values no run could use."""

from __future__ import annotations

import math

import pytest

from lit_d2l.cli.main import main
from lit_d2l.errors import ConfigError
from lit_d2l.models import LinearRegression
from tests.conftest import linear_fit_args
from tests.test_cli import assert_one_error_line


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": math.inf}, r"model\.lr must be > 0 and finite, got inf"),
        ({"lr": float("1e309")}, r"model\.lr must be > 0 and finite, got inf"),
        ({"lr": math.nan}, r"model\.lr must be > 0 and finite, got nan"),
        ({"momentum": math.inf}, r"model\.momentum must be in \[0, 1\), got inf"),
        ({"momentum": math.nan}, r"model\.momentum must be in \[0, 1\), got nan"),
        ({"weight_decay": math.inf}, r"model\.weight_decay must be >= 0 and finite, got inf"),
        ({"weight_decay": math.nan}, r"model\.weight_decay must be >= 0 and finite, got nan"),
        ({"l2": math.inf}, r"model\.l2 must be >= 0 and finite, got inf"),
        ({"l2": math.nan}, r"model\.l2 must be >= 0 and finite, got nan"),
    ],
)
def test_non_finite_settings_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        LinearRegression(**kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "override",
    [
        ["--model.lr", ".inf"],
        ["--model.lr", "1e309"],
        ["--model.lr", ".nan"],
        ["--model.l2", ".inf"],
    ],
)
def test_non_finite_settings_through_the_cli_record_nothing(override, tracking_uri, client, experiment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *linear_fit_args(tracking_uri, experiment, *override)])
    assert_one_error_line(exit_info.value.code, capsys.readouterr().err, r"^lit-d2l: error: model\.(lr|l2) must be")
    assert client.get_experiment_by_name(experiment) is None
