"""Values go to MLflow in the fewest ``log_batch`` calls its per-call limits allow."""

from __future__ import annotations

import math

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.validation import _validate_batch_log_limits

from lit_d2l.tracking.outbox import batches


@pytest.mark.parametrize(("n_params", "n_tags", "n_metrics"), [(80, 12, 900), (250, 10, 2500), (0, 130, 5), (0, 0, 1)])
def test_every_value_once_in_order_within_limits_in_the_fewest_calls(n_params, n_tags, n_metrics) -> None:
    params = [Param(f"p{i}", str(i)) for i in range(n_params)]
    tags = [RunTag(f"t{i}", str(i)) for i in range(n_tags)]
    metrics = [Metric("train/loss", float(i), 0, i) for i in range(n_metrics)]
    calls = batches(params, tags, metrics)
    for call in calls:
        _validate_batch_log_limits(call.metrics, call.params, call.tags)  # MLflow's own check: raises past a limit
    assert [p for call in calls for p in call.params] == params
    assert [t for call in calls for t in call.tags] == tags
    assert [m for call in calls for m in call.metrics] == metrics
    fewest = max(math.ceil(n_params / 100), math.ceil(n_tags / 100), math.ceil((n_params + n_tags + n_metrics) / 1000))
    assert len(calls) == fewest


def test_nothing_to_write_is_no_call() -> None:
    assert batches([], [], []) == []
