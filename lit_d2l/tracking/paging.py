"""Every page of an MLflow search: ``search_runs`` and ``search_experiments`` return one page (1,000 by
default), and a sweep past that many runs must still see all of them.

A page token is an offset, so runs are read oldest first by default: a run created while the pages
are read lands on the last page instead of pushing one already read onto the next page twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:  # MLflow is imported by the calls that use it: `lit-d2l runs --help` answers without it
    from mlflow.entities import Experiment, Run
    from mlflow.tracking import MlflowClient

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Page(Protocol[T_co]):
    """One page of a search, as MLflow's client returns it: its results and the token of the next page."""

    token: str | None

    def __iter__(self) -> Iterator[T_co]: ...


#: Results per request: MLflow's own default page.
PAGE_SIZE = 1000


def every_page(search: Callable[[str | None, int], Page[T]], limit: int | None = None) -> list[T]:
    """The results of ``search(page_token, page_size)``, following each page's ``token`` until there is
    none, or the first ``limit`` of them."""
    results: list[T] = []
    token: str | None = None
    while limit is None or len(results) < limit:
        page = search(token, PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(results)))
        results.extend(page)
        token = page.token
        if not token:
            break
    return results


def all_runs(
    client: MlflowClient,
    experiment_ids: list[str],
    filter_string: str = "",
    order_by: list[str] | None = None,
    limit: int | None = None,
) -> list[Run]:
    """Every active run ``client.search_runs`` finds however many pages (or its first ``limit``), oldest first
    unless ``order_by`` says otherwise; each run once."""
    if not experiment_ids:
        return []
    order = order_by or ["attributes.start_time ASC"]
    runs = every_page(
        lambda token, size: client.search_runs(
            experiment_ids, filter_string, max_results=size, order_by=order, page_token=token
        ),
        limit,
    )
    return list({run.info.run_id: run for run in runs}.values())


def all_experiments(client: MlflowClient) -> list[Experiment]:
    """Every active experiment of the store, however many pages."""
    return every_page(lambda token, size: client.search_experiments(max_results=size, page_token=token))
