"""search_runs: the filter language, ordering, limits and malformed filters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loopml.core.errors import InvalidInputError
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker


@pytest.fixture
def populated(any_workspace: Workspace) -> Iterator[Tracker]:
    t = Tracker(any_workspace)
    grid = [
        ("a", "flights", 6, 0.81, "ops"),
        ("b", "flights", 6, 0.65, "ops"),
        ("c", "flights", 8, 0.75, "research"),
        ("d", "flights", 8, 0.90, "ops"),
        ("e", "taxis", 6, 0.99, "ops"),
    ]
    for name, exp, depth, auc, team in grid:
        with t.start_run(
            exp, name=name, params={"depth": depth}, tags={"team": team}, capture_environment=False
        ) as run:
            run.log_metric("auc", auc)
            run.log_metric("val loss", 1 - auc)
    with t.start_run("flights", name="f", params={"depth": 6}, capture_environment=False):
        pass  # a run with no metrics at all
    yield t
    t.close()


def names(runs: list) -> list[str]:  # type: ignore[type-arg]
    return sorted(r.name for r in runs)


def test_metric_and_param_filter_from_the_issue(populated: Tracker) -> None:
    runs = populated.search_runs(
        "flights", filter="metrics.auc > 0.7 and params.depth = '6'", order_by="metrics.auc desc"
    )
    assert [r.name for r in runs] == ["a"]
    assert runs[0].metrics["auc"] == 0.81 and runs[0].params["depth"] == "6"


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("metrics.auc >= 0.75", ["a", "c", "d"]),
        ("metrics.auc < 0.7 or tags.team = 'research'", ["b", "c"]),
        ("(params.depth = '8' or metrics.auc < 0.7) and tags.team = 'ops'", ["b", "d"]),
        ("tags.team != 'ops'", ["c"]),
        ("tags.team like 'res%'", ["c"]),
        ("tags.team ILIKE 'OPS'", ["a", "b", "d"]),
        ("params.depth in ('8', '9')", ["c", "d"]),
        ("metrics.`val loss` < 0.15", ["d"]),
        ("attributes.name = 'f'", ["f"]),
        ("attributes.status = 'finished' and metrics.auc = 0.9", ["d"]),
        ('METRICS.auc > 0.8 AND params.depth = "6"', ["a"]),
        ("metrics.auc is null", ["f"]),
        ("tags.team IS NULL", ["f"]),
        ("tags.team is not null and metrics.auc < 0.7", ["b"]),
        ("params.depth is null", []),
        ("attributes.end_time is not null and tags.nothing is null", ["a", "b", "c", "d", "f"]),
    ],
)
def test_filter_language(populated: Tracker, expr: str, expected: list[str]) -> None:
    assert names(populated.search_runs("flights", filter=expr)) == expected


def test_experiments_filter_and_limit(populated: Tracker) -> None:
    assert names(populated.search_runs()) == ["a", "b", "c", "d", "e", "f"]
    assert names(populated.search_runs(["taxis"])) == ["e"]
    assert len(populated.search_runs(limit=2)) == 2


def test_order_by_metric_puts_runs_without_it_last(populated: Tracker) -> None:
    ordered = [r.name for r in populated.search_runs("flights", order_by="metrics.auc desc")]
    assert ordered == ["d", "a", "c", "b", "f"]
    ordered = [r.name for r in populated.search_runs("flights", order_by=["metrics.auc asc"])]
    assert ordered == ["b", "c", "a", "d", "f"]
    by_two = populated.search_runs("flights", order_by="params.depth desc, metrics.auc")
    assert [r.name for r in by_two] == ["c", "d", "b", "a", "f"]


def test_to_pandas_has_one_row_a_run(populated: Tracker) -> None:
    df = populated.search_runs("flights", filter="metrics.auc > 0").to_pandas()
    assert len(df) == 4
    assert {"run_id", "status", "metrics.auc", "params.depth", "tags.team"} <= set(df.columns)


@pytest.mark.parametrize(
    "expr, message",
    [
        ("metrics.auc >", "cannot parse"),
        ("metrics.auc > 0.7 and", "cannot parse"),
        ("auc > 0.7", "cannot parse"),
        ("bogus.auc > 1", "unknown field"),
        ("attributes.color = 'red'", "unknown attribute"),
        ("metrics.auc > 'high'", "compare it with a number"),
        ("metrics.auc like 0.5", "cannot parse|compare it with a number"),
        ("params.depth > 5", "quoted string"),
        ("params.depth = 6", "quoted string"),
        ("(metrics.auc > 0.5", "cannot parse"),
        ("metrics.auc > 0.5; drop table runs", "cannot parse"),
    ],
)
def test_malformed_filters_are_clear_errors(populated: Tracker, expr: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        populated.search_runs(filter=expr)


@pytest.mark.parametrize("limit", [0, -1, 10**9, "10", True])
def test_bad_limits(populated: Tracker, limit: object) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        populated.search_runs(limit=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "order_by, message",
    [
        ("auc desc", "cannot parse order_by"),
        ("bogus.auc desc", "unknown field"),
        ("metrics.auc desc; DROP TABLE runs", "cannot parse order_by"),
        ("metrics.auc sideways", "cannot parse order_by"),
        ("metrics.auc desc,", "cannot parse order_by"),
        (["metrics.auc", "params.depth desc desc"], "cannot parse order_by"),
        ("", "cannot parse order_by"),
    ],
)
def test_bad_order_by(populated: Tracker, order_by: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        populated.search_runs(order_by=order_by)  # type: ignore[arg-type]
    assert len(populated.search_runs()) == 6  # nothing was dropped


def test_order_by_keys_with_backticks(populated: Tracker) -> None:
    ordered = populated.search_runs("flights", order_by="metrics.`val loss` DESC")
    assert [r.name for r in ordered] == ["b", "c", "a", "d", "f"]


def test_huge_filters_are_refused_clearly(populated: Tracker) -> None:
    terms = " or ".join(f"metrics.auc = {i}" for i in range(3000))
    with pytest.raises(InvalidInputError, match="3000 comparisons; the limit is"):
        populated.search_runs(filter=terms)
    values = ", ".join(f"'{i}'" for i in range(3000))
    with pytest.raises(InvalidInputError, match="the limit is"):
        populated.search_runs(filter=f"params.depth in ({values})")
    nested = "(" * 3000 + "metrics.auc > 0" + ")" * 3000
    with pytest.raises(InvalidInputError, match="nested"):
        populated.search_runs(filter=nested)
    within = " or ".join(f"metrics.auc = {v}" for v in (0.81, 0.9, *range(200)))
    assert names(populated.search_runs(filter=within)) == ["a", "d"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filter": "params.depth = '\ud800'"},
        {"filter": "tags.`\udfff` = 'x'"},
        {"order_by": "params.\ud800"},
        {"experiment": "\ud800"},
    ],
)
def test_lone_surrogates_are_invalid_input(populated: Tracker, kwargs: dict[str, str]) -> None:
    with pytest.raises(InvalidInputError, match="not valid Unicode"):
        populated.search_runs(**kwargs)  # type: ignore[arg-type]


def test_every_match_carries_its_own_params_tags_and_metrics(any_workspace: Workspace) -> None:
    # Enough runs that the matches' extras are fetched for hundreds of ids in one go.
    t = Tracker(any_workspace)
    for i in range(600):
        with t.start_run(
            "many",
            name=f"r{i:03d}",
            params={"i": i, "parity": i % 2},
            tags={"mod3": i % 3},
            capture_environment=False,
        ) as run:
            run.log_metrics({"x": i / 7, "y": -i})
    found = t.search_runs("many", filter="params.parity = '0' and metrics.x >= 10", limit=1000)
    t.close()
    expected = [i for i in range(600) if i % 2 == 0 and i / 7 >= 10]
    assert sorted(r.name for r in found) == [f"r{i:03d}" for i in expected]
    for r in found:
        i = int(r.name[1:])
        assert r.params == {"i": str(i), "parity": "0"}
        assert r.tags == {"mod3": str(i % 3)}
        assert r.metrics == {"x": i / 7, "y": float(-i)}


def test_runs_page_walks_the_search_answer_in_pages(populated: Tracker) -> None:
    """Pages at successive offsets are the search's answer cut in order, with its total."""
    whole = [r.name for r in populated.search_runs(filter="params.depth = '6'")]
    seen: list[str] = []
    for offset in range(0, len(whole) + 2, 2):
        page = populated.runs_page(filter="params.depth = '6'", offset=offset, limit=2)
        assert page.total == len(whole) == 4 and page.offset == offset and page.limit == 2
        seen += [r.name for r in page.runs]
    assert seen == whole
    # A short last page counts from its own length; a page past the end still says the total.
    short = populated.runs_page(filter="params.depth = '6'", offset=3, limit=3)
    assert [r.name for r in short.runs] == whole[3:] and short.total == 4
    assert populated.runs_page(filter="params.depth = '6'", offset=9, limit=3).total == 4
    ordered = populated.runs_page("flights", order_by="metrics.auc desc", limit=3)
    assert [r.name for r in ordered.runs] == ["d", "a", "c"] and ordered.total == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": True}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "3"}, "offset"),
        ({"filter": "metrics.auc >"}, "cannot parse filter"),
        ({"experiment": "bad\ud800"}, "surrogate"),
    ],
)
def test_runs_page_refuses_bad_arguments(
    populated: Tracker, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        populated.runs_page(**kwargs)  # type: ignore[arg-type]
