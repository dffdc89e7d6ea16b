"""Follow-up commands printed after a run name the store the run is in, so they work as printed."""

from __future__ import annotations

import pytest

from lit_d2l.processes.interrupts import Interrupted
from lit_d2l.tracking.store import DEFAULT_TRACKING_URI, dashboard_hint, store_option


def test_the_default_store_needs_no_option_and_another_is_named(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert store_option(DEFAULT_TRACKING_URI) == ""
    assert dashboard_hint(DEFAULT_TRACKING_URI) == "lit-d2l ui"
    assert store_option("sqlite:////tmp/x.db") == " --tracking-uri sqlite:////tmp/x.db"
    assert dashboard_hint("sqlite:////tmp/x.db") == "lit-d2l ui --tracking-uri sqlite:////tmp/x.db"
    spaced = "sqlite:////tmp/dir with space/ü/mlflow.db"  # pasted as printed, it was three arguments
    assert store_option(spaced) == " --tracking-uri 'sqlite:////tmp/dir with space/ü/mlflow.db'"


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://mlflow.example.org"])
def test_a_server_is_opened_in_a_browser_not_through_lit_d2l_ui(uri: str, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert dashboard_hint(uri) == f"open {uri} in a browser"


def test_the_environments_store_is_the_default(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert store_option("http://127.0.0.1:5000") == ""
    assert store_option(DEFAULT_TRACKING_URI, "--tracking.uri") == f" --tracking.uri {DEFAULT_TRACKING_URI}"


def test_the_resume_hint_names_the_store() -> None:
    stop = Interrupted(15, step=7, checkpoint="/c.ckpt")
    stop.run_id, stop.store_option = "abc", " --tracking.uri sqlite:////tmp/x.db"
    assert str(stop).endswith("continue it with: lit-d2l fit --resume abc --tracking.uri sqlite:////tmp/x.db")
