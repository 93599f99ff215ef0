"""Query strings are parsed by the schema each view declares: a value that does not fit
is a 422 naming the parameter, with the bound written in the schema; an empty value
is as good as none; parameters a view does not take are ignored."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("query", "named", "says"),
    [
        ("limit=abc", "limit", "Not a valid integer"),
        ("limit=0", "limit", "greater than or equal to 1"),
        ("limit=201", "limit", "less than or equal to 200"),
        ("offset=-1", "offset", "greater than or equal to 0"),
        ("status=sleeping", "status", "Must be one of: queued"),
    ],
)
def test_a_value_that_does_not_fit_is_422_naming_the_parameter(client, auth, query, named, says):
    response = client.get(f"/v1/import/batches?{query}", headers=auth)
    assert response.status_code == 422
    detail = response.json["detail"]
    assert detail["code"] == "invalid_parameter"
    assert f"'{named}'" in detail["message"] and says in detail["message"]


def test_offset_and_cursor_together_are_refused(client, auth):
    response = client.get("/v1/vendors?offset=5&cursor=abc", headers=auth)
    assert response.status_code == 422
    assert "either 'offset' or 'cursor'" in response.json["detail"]["message"]


def test_empty_and_unknown_parameters_are_as_good_as_none(client, auth):
    page = client.get("/v1/vendors?limit=&offset=&updated_since=&colour=blue", headers=auth)
    assert page.status_code == 200
    assert (page.json["limit"], page.json["offset"]) == (50, 0)


def test_a_number_may_come_with_spaces_and_a_boolean_in_any_case(client, auth, make_report):
    make_report()
    assert client.get("/v1/vendors?limit=%205%20", headers=auth).json["limit"] == 5
    response = client.post(
        "/v1/import/vendors?dry_run=TRUE",
        json={"data": [{"Supplier ID": "V-1", "Supplier Name": "Acme"}]},
        headers=auth,
    )
    assert response.status_code == 200 and response.json["dry_run"] is True


def test_the_longest_wait_is_the_setting(app, client, auth, make_report):
    make_report()
    batch = client.post(
        "/v1/import/vendors",
        json={"data": [{"Supplier ID": "V-1", "Supplier Name": "Acme"}]},
        headers=auth,
    ).json
    longest = int(app.config["SETTINGS"].sync_wait_seconds)
    url = f"/v1/import/batches/{batch['batch_id']}"
    assert client.get(f"{url}?wait={longest}", headers=auth).status_code == 200
    response = client.get(f"{url}?wait={longest + 1}", headers=auth)
    assert response.status_code == 422
    assert f"at most {longest}" in response.json["detail"]["message"]
