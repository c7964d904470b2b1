"""Undoing a batch's data (SPEC §12): observations, curves, matrices and events go back to what
they were before the batch, under the same conflict rule as objects."""

from __future__ import annotations

from urllib.parse import quote

import orjson
import requests
from conftest import assert_error, auth, db_rows, start_live_server, truncate
from test_history import EMPTY, everything, get, obj, post, rollback, rollbacks_at_once


def series(*points, **header):
    return {"_type": "VarTimeSeries", **header, "data": [{"time": t, "value": v} for t, v in points]}


def curve(day, *contracts):
    return {
        "_type": "VarCurve",
        "ondate": {"curveDate": day},
        "contracts": [{"tenor": t, "value": v} for t, v in contracts],
    }


def matrix(day, values):
    return {"_type": "VarMatrix", "ondate": day, "rows": ["r"], "columns": ["c"], "values": values}


def event(ident, time, value):
    return {"_type": "VarEvent", "_id": ident, "eventtime": time, "value": value}


# The reads a rollback must give back exactly: every object, and every data route.
DATA_READS = (
    "/api/data/v1/private/S:P",
    "/api/data/v1/private/S:P?_range=last(2)",
    "/api/data/v1/private/C:K",
    "/api/data/v1/private/C:K:2024-01-02",
    "/api/data/v1/private/C:K?tenor=M1",
    "/api/data/v1/private/X:Q",
    "/api/data/v1/private/X:Q:2024-01-02",
    "/api/event/v1/private/E:L",
    "/api/event/v1/private/E:L:e1",
    "/api/data/v1/private/N:P",
    "/api/data/v1/private/C:K:2024-01-03",
    "/api/event/v1/private/E:L:e2",
)


def reads(client) -> dict:
    """Every object and every data read, with its status."""
    out = {"objects": everything(client)}
    for path in DATA_READS:
        response = client.get(path, headers=auth())
        out[path] = (response.status_code, response.get_json() if response.status_code == 200 else None)
    return out


BASE = [
    {"_id": "A", "a": 1},
    {"_id": "R", "r": 1, "keep": True},
    {
        "_id": "S",
        "P": series(("2024-01-01T00:00:00Z", 1.0), ("2024-01-01T01:00:00Z", 2.0), ("2024-01-01T02:00:00Z", 3.0)),
    },
    {"_id": "C", "K": curve("2024-01-02", ("M1", 10.0), ("M2", 11.0))},
    {"_id": "X", "Q": matrix("2024-01-02", [[1.0]])},
    {"_id": "E", "L": [event("e1", "2024-01-01T10:00:00Z", 1)]},
]
BAD = [
    {"_id": "A", "b": 2},  # merged
    {"_id": "R", "_replace": True, "r": 2},  # replaced
    {"_id": "N", "P": series(("2024-02-01T00:00:00Z", 5.0))},  # created, with data
    # one observation corrected, one left as it was, two new on a new day
    {
        "_id": "S",
        "P": series(
            ("2024-01-01T01:00:00Z", 20.0),
            ("2024-01-01T02:00:00Z", 3.0),
            ("2024-01-02T00:00:00Z", 4.0),
            ("2024-01-02T01:00:00Z", 5.0),
        ),
    },
    {"_id": "C", "K": curve("2024-01-02", ("M1", 99.0))},  # a curve date replaced
    {"_id": "C", "K": curve("2024-01-03", ("M1", 12.0))},  # and a new one
    {"_id": "X", "Q": matrix("2024-01-02", [[2.0]])},  # a matrix changed
    {"_id": "E", "L": [event("e1", "2024-01-01T10:00:00Z", 2), event("e2", "2024-01-05T00:00:00Z", 7)]},
]


def test_rollback_of_a_mixed_batch_restores_every_earlier_read_and_its_rollback_reapplies_it(client, db_url):
    post(client, BASE, "base")
    before = reads(client)
    bad = post(client, BAD, "bad")
    # S, C, X and E keep their headers: only their data changed (no new object version)
    assert bad["counts"]["objects"] == {**EMPTY, "created": 1, "updated": 2, "unchanged": 4}
    assert bad["counts"]["points"] == {**EMPTY, "created": 3, "updated": 1, "unchanged": 1}
    assert bad["counts"]["curves"] == {**EMPTY, "created": 1, "updated": 1}
    assert bad["counts"]["matrices"] == {**EMPTY, "updated": 1}
    assert bad["counts"]["events"] == {**EMPTY, "created": 1, "updated": 1}
    after_bad = reads(client)
    assert after_bad != before

    response = rollback(client, "bad")
    assert response.status_code == 201, response.get_data(as_text=True)
    undo = response.get_json()
    assert undo["status"] == "success" and undo["summary"]["failures"] == {}
    assert undo["counts"]["objects"] == {**EMPTY, "updated": 2, "removed": 1}
    assert undo["counts"]["points"] == {**EMPTY, "updated": 1, "removed": 3}  # N's point went with N
    assert undo["counts"]["curves"] == {**EMPTY, "updated": 1, "removed": 1}
    assert undo["counts"]["matrices"] == {**EMPTY, "updated": 1}
    assert undo["counts"]["events"] == {**EMPTY, "updated": 1, "removed": 1}
    assert reads(client) == before  # objects, observations, curves, the matrix and events, exactly
    assert db_rows(db_url, "SELECT count(*) FROM objects WHERE tenant = 'tenant-a' AND id = 'N'") == [(0,)]

    again = rollback(client, undo["_id"])  # a rollback of the rollback re-applies the batch
    assert again.status_code == 201, again.get_data(as_text=True)
    reapplied = reads(client)
    for path in DATA_READS:
        assert reapplied[path] == after_bad[path], path
    assert {i: {k: v for k, v in o.items() if not k.startswith("_")} for i, o in reapplied["objects"][1].items()} == {
        i: {k: v for k, v in o.items() if not k.startswith("_")} for i, o in after_bad["objects"][1].items()
    }


def test_a_later_correction_is_a_409_naming_it_and_force_undoes_the_rest(client):
    post(client, [{"_id": "S", "P": series(("2024-01-01", 1.0), ("2024-01-02", 2.0))}], "first")
    post(client, [{"_id": "S", "P": series(("2024-01-01", 10.0), ("2024-01-02", 20.0))}], "fix")
    post(client, [{"_id": "S", "P": series(("2024-01-02", 200.0))}], "later")
    before = reads(client)

    response = rollback(client, "fix")
    body = assert_error(response, 409, "_force=true")
    assert body["errors"]["count"] == 1
    assert body["errors"]["items"] == {
        "S:P:2024-01-02": {"kind": "points", "reason": "changed since", "batches": ["later"]}
    }
    assert reads(client) == before  # nothing changed
    assert "rolledBackBy" not in get(client, "/api/batch/v1/fix")

    forced = rollback(client, "fix", "?_force=true")
    assert forced.status_code == 201, forced.get_data(as_text=True)
    summary = forced.get_json()
    assert summary["status"] == "warning" and list(summary["summary"]["failures"]) == ["S:P:2024-01-02"]
    assert "later" in summary["summary"]["failures"]["S:P:2024-01-02"]
    assert [p["value"] for p in get(client, "/api/data/v1/private/S:P")["data"]] == [1.0, 200.0]


def test_an_object_the_batch_created_is_kept_when_another_batch_wrote_its_data_since(client):
    post(client, [{"_id": "NEW", "P": series(("2024-01-01", 1.0))}], "create")
    post(client, [{"_id": "NEW", "P": series(("2024-01-02", 2.0))}], "append")
    body = assert_error(rollback(client, "create"), 409)
    assert body["errors"]["items"]["NEW"] == {
        "kind": "objects",
        "reason": "its data was changed since",
        "batches": ["append"],
    }
    assert [p["value"] for p in get(client, "/api/data/v1/private/NEW:P")["data"]] == [1.0, 2.0]
    # undoing the append first makes the creation undoable
    assert rollback(client, "append").status_code == 201
    assert rollback(client, "create").status_code == 201
    obj(client, "NEW", status=404)
    assert_error(client.get("/api/data/v1/private/NEW:P", headers=auth()), 404)


def test_rights_on_data_rollbacks_and_an_unchanged_resend_has_nothing_to_undo(client):
    post(client, [{"_id": "S", "P": series(("2024-01-01", 1.0))}], "load")
    resend = post(client, [{"_id": "S", "P": series(("2024-01-01", 1.0))}], "resend")
    assert resend["counts"]["points"] == {**EMPTY, "unchanged": 1}
    assert resend["summary"]["series"] == {}  # nothing changed: no date listed
    undo = rollback(client, "resend")
    assert undo.status_code == 201 and undo.get_json()["message"] == "Rolled back batch resend: nothing to change"
    other = auth(user="someone-else@example.com", roles=("batch.read", "batch.write"))
    assert_error(rollback(client, "load", headers=other), 403)
    assert [p["value"] for p in get(client, "/api/data/v1/private/S:P")["data"]] == [1.0]


def test_two_concurrent_rollbacks_of_a_data_batch_apply_once(db_url):
    tenant = "tenant-data-rollbacks"
    headers = {**auth(tenant=tenant), "Content-Type": "application/json"}
    server = start_live_server(db_url, workers=2)
    day = [(f"2024-01-01T{h:02d}:00:00Z", float(h)) for h in range(24)]
    fixed = [(t, v + 100) for t, v in day[:12]] + [(f"2024-01-02T{h:02d}:00:00Z", 1.0) for h in range(24)]
    try:
        url = server.url
        for batch_id, points in (("seed", day), ("change", fixed)):
            body = orjson.dumps(
                {"_id": batch_id, "elements": [{"_id": f"S{i}", "P": series(*points)} for i in range(20)]}
            )
            assert requests.post(url + "/api/batch/v1", data=body, headers=headers, timeout=60).status_code == 201
        _, applied = rollbacks_at_once(url, "change", headers)
        assert applied["counts"]["points"] == {**EMPTY, "updated": 240, "removed": 480}
        for i in (0, 19):
            read = requests.get(f"{url}/api/data/v1/private/S{i}:P", headers=headers, timeout=30).json()
            assert [(p["time"], p["value"]) for p in read["data"]] == day
    finally:
        server.stop()
        truncate(db_url)


def test_deleting_an_object_removes_its_data_and_rolling_the_delete_back_brings_both_back(client, db_url):
    post(client, [{"_id": "S", "P": series(("2024-01-01", 1.0)), "L": [event("e1", "2024-01-01", 1)]}], "load")
    before = reads(client)
    deleted = client.delete("/api/object/v1/private/S", headers=auth())
    assert deleted.status_code == 204
    assert_error(client.get("/api/data/v1/private/S:P", headers=auth()), 404)
    (summary,) = get(client, "/api/batch/v1?service=object")
    assert summary["counts"]["objects"] == {**EMPTY, "removed": 1}
    assert summary["counts"]["points"] == {**EMPTY, "removed": 1}
    assert summary["counts"]["events"] == {**EMPTY, "removed": 1}
    archived = db_rows(
        db_url,
        "SELECT (SELECT count(*) FROM series_versions v JOIN tenants t ON t.key = v.tenant_key WHERE t.tenant = %s),"
        " (SELECT count(*) FROM data_versions WHERE tenant = %s)",
        ("tenant-a", "tenant-a"),
    )
    assert archived == [(1, 1)]  # the removed observation and event are kept as history

    assert rollback(client, summary["_id"]).status_code == 201
    assert reads(client) == before


def prune(app, before: str):
    return app.test_cli_runner().invoke(args=["history", "prune", "--before", before])


def test_prune_drops_data_corrections_before_the_date_and_as_of_reads_before_it_answer_410(app, client, db_url):
    truncate(db_url)  # pruning is store-wide: only this test's history
    paths = ("/api/data/v1/private/S:P", "/api/data/v1/private/S:C")
    post(client, [{"_id": "S", "P": series(("2024-01-01", 1.0)), "C": curve("2024-01-02", ("M1", 1.0))}], "v1")
    v2 = post(client, [{"_id": "S", "P": series(("2024-01-01", 2.0)), "C": curve("2024-01-02", ("M1", 2.0))}], "v2")
    as_of_v2 = {path: get(client, path) for path in paths}
    post(client, [{"_id": "S", "P": series(("2024-01-01", 3.0)), "C": curve("2024-01-02", ("M1", 3.0))}], "v3")
    current = {path: get(client, path) for path in paths}
    rows = "SELECT (SELECT count(*) FROM series_versions), (SELECT count(*) FROM data_versions)"
    assert db_rows(db_url, rows) == [(2, 2)]

    result = prune(app, v2["timestamp"])  # v1's values were superseded when v2 was written: before it
    assert result.exit_code == 0, result.output
    pruned = orjson.loads(result.stdout)
    assert (pruned["seriesVersions"], pruned["dataVersions"]) == (1, 1)
    assert db_rows(db_url, rows) == [(1, 1)]
    assert {path: get(client, path) for path in paths} == current  # current data never touched
    after = quote(v2["timestamp"], safe="")
    for path in paths:
        assert get(client, f"{path}?_asof={after}") == as_of_v2[path]  # still known
        assert_error(client.get(f"{path}?_asof=2024-01-01", headers=auth()), 410, "pruned")
    assert rollback(client, "v3").status_code == 201  # its change log and v2's values were kept
    assert {path: get(client, path) for path in paths} == as_of_v2
