import pytest

from loopml.core.errors import InvalidInputError
from loopml.server.mlflow.filters import conditions, matches, translate_filter, translate_order_by


@pytest.mark.parametrize(
    ("mlflow", "loopml"),
    [
        ("metrics.auc > 0.7 AND params.depth = '6'", "metrics.auc > 0.7 AND params.depth = '6'"),
        ("attributes.status = 'FINISHED'", "attributes.status = 'finished'"),
        ("status != 'FAILED'", "attributes.status != 'failed'"),
        ("run_name LIKE 'a%'", "attributes.name LIKE 'a%'"),
        ("start_time > 1700000000000", "attributes.start_time > 1700000000.0"),
        ('metrics."val loss" <= 3', "metrics.`val loss` <= 3"),
        ("tags.mlflow.runName = 'x'", "tags.mlflow.runName = 'x'"),
        ("params.a IN ('1', '2')", "params.a IN ( '1' , '2' )"),
        ("metrics.a == 1", "metrics.a = 1"),
        ("", None),
    ],
)
def test_filters_translate(mlflow: str, loopml: str | None) -> None:
    assert translate_filter(mlflow) == loopml


@pytest.mark.parametrize("bad", ["datasets.name = 'x'", "auc > 1", "metrics.a > 1 ; drop", "§"])
def test_bad_filters_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        translate_filter(bad)


def test_order_by_translates() -> None:
    assert translate_order_by(["metrics.auc DESC", "start_time"]) == [
        "metrics.auc desc",
        "attributes.start_time asc",
    ]
    with pytest.raises(InvalidInputError):
        translate_order_by(["metrics.auc sideways"])


def test_a_status_filter_counts_without_error(workspace) -> None:  # type: ignore[no-untyped-def]
    """The status attribute compiles with a bound 'stale before' time; counting a page
    must bind it as loading does (it answered 500 once)."""
    from loopml.tracking.tracker import Tracker

    tracker = Tracker(workspace)
    try:
        with tracker.start_run("e", capture_environment=False):
            pass
        page = tracker.runs_page(filter="attributes.status = 'finished'")
        assert page.total == 1 and len(page.runs) == 1
    finally:
        tracker.close()


def test_registry_filters_match_as_mlflow_does():
    found = conditions("name LIKE 'delay%' AND tag.`mlflow.prompt.is_prompt` != 'true'", ["name"])
    assert found == [("name", "like", "delay%"), ("tags.mlflow.prompt.is_prompt", "!=", "true")]
    assert matches({"name": "delays"}, found)  # no such tag: not equal to 'true'
    assert not matches({"name": "delays", "tags.mlflow.prompt.is_prompt": "true"}, found)
    assert not matches({"name": "Delays"}, found)
    assert matches({"name": "Delays"}, conditions("name ILIKE 'delay_'", ["name"]))
    assert not matches({"name": "delays!"}, conditions("name ILIKE 'delay_'", ["name"]))
    # Many wildcards against a long name: answered (by dynamic programming, not a regex).
    assert not matches({"name": "a" * 250}, conditions(f"name LIKE '{'%a' * 100}b'", ["name"]))
    for bad in ("name = ", "name = 'a' OR name = 'b'", "size = '1'", "name > 'a'", "x" * 5000):
        with pytest.raises(InvalidInputError):
            conditions(bad, ["name"])
