"""The guard of the text a request brings in (app/text_inputs.py), on SQLite: where it
answers and where it leaves the answer to others. Every request shape on PostgreSQL,
where such text made the driver fail, is in
tests/integration/test_text_inputs_postgres.py."""

from __future__ import annotations

import pytest

from app.errors import InvalidBody
from app.text_inputs import check_document


def test_a_nul_in_a_path_parameter_is_422_once_authenticated(client, auth, make_report):
    make_report()
    response = client.get("/v1/import-reports/vendors%00", headers=auth)
    assert response.status_code == 422
    assert response.json["detail"] == {
        "code": "invalid_parameter",
        "message": "Path parameter 'slug' holds a NUL character (\\u0000); no slug does. "
        "Check the URL.",
    }
    assert client.get("/v1/import-reports/vendors%00").status_code == 401


def test_a_nul_in_a_query_parameter_is_422(client, auth):
    response = client.get("/v1/vendors?external_id=V-1%00", headers=auth)
    assert response.status_code == 422
    assert response.json["detail"]["message"] == (
        "Query parameter 'external_id' holds a NUL character (\\u0000), which the service "
        "cannot look up."
    )


def test_a_url_that_matches_nothing_stays_a_404(client, auth):
    response = client.get("/v1/nothing/a%00b", headers=auth)
    assert response.status_code == 404
    assert response.json["detail"]["code"] == "not_found"


def test_a_disabled_ops_page_stays_a_404(client):
    response = client.post("/ops/batches/a%00b/retry", headers={"X-Requested-With": "x"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "document, field, problem",
    [
        ({"report_name": "a\x00"}, "report_name", "Holds a NUL character (\\u0000)"),
        ({"mapping": {"name": "N\x00"}}, "mapping.name", "Holds a NUL character (\\u0000)"),
        ({"mapping": {"na\x00me": "N"}}, "mapping", "Has a key holding a NUL character (\\u0000)"),
        ({"events": ["ok", "\ud800"]}, "events.1", "Holds a lone surrogate (\\ud800)"),
        (["\x00"], "0", "Holds a NUL character (\\u0000)"),
        ("\x00", "body", "Holds a NUL character (\\u0000)"),
    ],
)
def test_a_json_body_is_checked_to_any_depth_naming_the_path(document, field, problem):
    with pytest.raises(InvalidBody) as raised:
        check_document(document)
    assert raised.value.extra["errors"] == [
        {"field": field, "message": f"{problem}, which the service cannot store."}
    ]
    assert raised.value.message.startswith(f"The body is not valid: {field}: ")


def test_a_json_body_without_such_text_passes():
    check_document({"slug": "a", "mapping": {"name": "Name"}, "required": [], "n": 1.5})


def test_a_lone_surrogate_in_a_json_body_is_422(client, auth):
    response = client.post(
        "/v1/webhooks",
        data=b'{"url": "https://example.com/h", "events": ["Import.Completed"], '
        b'"secret": "0123456789abcdef\\udc00"}',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json["detail"]["code"] == "invalid_body"
    assert "surrogate" in response.json["detail"]["message"]
