"""``importer keys create|list|revoke``: an operator manages an org's API keys."""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from click.testing import CliRunner

from cli import main
from importer.db import utcnow
from importer.models import ApiKey
from importer.orgs import hash_key


def env_for(settings):
    return {
        "IMPORTER_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": "",
    }


def invoke(settings, *args):
    return CliRunner().invoke(main, list(args), env=env_for(settings))


def stored_keys(db, org_id=None):
    with db.session() as session:
        query = sa.select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if org_id is not None:
            query = query.where(ApiKey.org_id == org_id)
        return list(session.scalars(query))


def add_key(db, org, prefix, name=None):
    """A key row with a chosen prefix (two keys sharing the start of theirs are rare)."""
    with db.session() as session:
        session.add(
            ApiKey(
                org_id=org.id,
                key_hash=hash_key(prefix + "-made-up"),
                key_prefix=prefix,
                name=name,
                created_at=utcnow(),
            )
        )


def test_create_prints_the_key_once_and_it_works(settings, db, client, org_and_key):
    org, _ = org_and_key

    result = invoke(settings, "keys", "create", org.id, "--name", "erp-2027")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    first, second = stored_keys(db, org.id)  # the key made with the org, and the new one
    assert (
        lines[0] == f"Created API key {second.key_prefix} (erp-2027) for org {org.id} (Acme Risk)."
    )
    assert lines[1] == "It is shown this once; store it now:"
    api_key = lines[3].strip()
    assert api_key.startswith(second.key_prefix) and len(api_key) == len("ak_") + 48
    assert (second.name, second.key_hash, second.revoked_at) == (
        "erp-2027",
        hash_key(api_key),
        None,
    )
    assert api_key not in {second.key_prefix, second.key_hash}  # never stored in clear
    response = client.get("/v1/import-reports", headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200
    assert first.revoked_at is None  # the old key is untouched


def test_create_json_and_an_org_named_instead_of_its_id(settings, db, make_org):
    org, _ = make_org("Globex")

    result = invoke(settings, "keys", "create", "Globex", "--json")

    assert result.exit_code == 0, result.output
    created = orjson.loads(result.output)
    assert set(created) == {
        "prefix",
        "name",
        "org_id",
        "org_name",
        "created_at",
        "last_used_at",
        "revoked_at",
        "active",
        "api_key",
    }
    assert (created["org_id"], created["org_name"], created["name"]) == (org.id, "Globex", None)
    assert created["api_key"].startswith(created["prefix"]) and created["active"] is True
    assert len(stored_keys(db, org.id)) == 2


def test_an_org_is_refused_when_unknown_or_when_its_name_is_not_unique(settings, db, make_org):
    first, _ = make_org("Twin")
    second, _ = make_org("Twin")

    unknown = invoke(settings, "keys", "create", "Nobody")
    assert unknown.exit_code == 1
    assert "No org with the id or name 'Nobody'." in unknown.output
    ambiguous = invoke(settings, "keys", "list", "Twin")
    assert ambiguous.exit_code == 1
    assert f"2 orgs are named 'Twin' ({first.id}, {second.id}): give its id." in ambiguous.output
    by_id = invoke(settings, "keys", "create", second.id)
    assert by_id.exit_code == 0, by_id.output
    assert [len(stored_keys(db, org.id)) for org in (first, second)] == [1, 2]


def test_a_name_that_is_too_long_or_blank_is_refused(settings, db, org_and_key):
    org, _ = org_and_key
    for bad in ("x" * 101, "  ", "tab\there"):
        result = invoke(settings, "keys", "create", org.id, "--name", bad)
        assert result.exit_code == 2, result.output
        assert "--name" in result.output
    assert len(stored_keys(db, org.id)) == 1


def test_list_shows_every_key_with_its_dates(settings, db, org_and_key):
    org, _ = org_and_key
    invoke(settings, "keys", "create", org.id, "--name", "ci")
    old, new = stored_keys(db, org.id)
    assert invoke(settings, "keys", "revoke", old.key_prefix).exit_code == 0

    result = invoke(settings, "keys", "list", org.id)

    assert result.exit_code == 0, result.output
    title, header, *rows = result.output.splitlines()
    assert title == f"API keys of org {org.id} (Acme Risk): 1 active, 2 in all"
    assert header.split() == ["PREFIX", "NAME", "CREATED", "LAST", "USED", "REVOKED"]
    assert [row.split()[:2] for row in rows] == [[old.key_prefix, "-"], [new.key_prefix, "ci"]]
    assert rows[0].endswith(" UTC") and rows[0].count("UTC") == 2  # created, revoked
    assert rows[1].split()[-1] == "-" and rows[1].count("UTC") == 1  # never used, active

    listed = orjson.loads(invoke(settings, "keys", "list", "Acme Risk", "--json").output)
    assert (listed["org_id"], listed["org_name"]) == (org.id, "Acme Risk")
    assert [(i["prefix"], i["name"], i["active"]) for i in listed["items"]] == [
        (old.key_prefix, None, False),
        (new.key_prefix, "ci", True),
    ]
    assert listed["items"][0]["revoked_at"] >= listed["items"][0]["created_at"]
    assert listed["items"][1]["last_used_at"] is None


def test_list_shows_when_a_key_was_last_used(settings, client, org_and_key, auth):
    org, _ = org_and_key
    assert client.get("/v1/import-reports", headers=auth).status_code == 200

    (item,) = orjson.loads(invoke(settings, "keys", "list", org.id, "--json").output)["items"]

    assert item["last_used_at"] is not None and item["last_used_at"] >= item["created_at"]


def test_revoke_by_prefix_then_again(settings, db, org_and_key):
    org, _ = org_and_key
    (key,) = stored_keys(db, org.id)

    result = invoke(settings, "keys", "revoke", key.key_prefix)

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Revoked API key {key.key_prefix} of org {org.id}. It stops working within 10 seconds.\n"
    )
    assert result.stderr == f"The org has no active key left: importer keys create {org.id}\n"
    (revoked,) = stored_keys(db, org.id)
    assert revoked.revoked_at is not None
    again = invoke(settings, "keys", "revoke", key.key_prefix, "--json")
    assert again.exit_code == 0
    body = orjson.loads(again.output)
    assert (body["revoked_now"], body["active"], body["active_keys_left"]) == (False, False, 0)
    assert stored_keys(db, org.id)[0].revoked_at == revoked.revoked_at  # kept, not moved


def test_revoke_with_the_key_itself(settings, db, org_and_key, make_org):
    org, api_key = org_and_key
    other, _ = make_org("Other")

    result = invoke(settings, "keys", "revoke", api_key, "--json")

    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["org_id"] == org.id
    assert [key.revoked_at is not None for key in stored_keys(db)] == [True, False]


def test_revoke_refuses_an_ambiguous_unknown_or_too_short_prefix(settings, db, org_and_key):
    org, _ = org_and_key
    add_key(db, org, "ak_abcd1111aaaa", name="one")
    add_key(db, org, "ak_abcd2222bbbb")

    ambiguous = invoke(settings, "keys", "revoke", "ak_abcd")
    assert ambiguous.exit_code == 1
    assert (
        f"'ak_abcd' names 2 keys: ak_abcd1111aaaa of {org.id} (one); ak_abcd2222bbbb of "
        f"{org.id}. Give more of the prefix." in ambiguous.output
    )
    unknown = invoke(settings, "keys", "revoke", "ak_ffff0000")
    assert unknown.exit_code == 1
    assert "No API key starts with 'ak_ffff0000'." in unknown.output
    too_short = invoke(settings, "keys", "revoke", "ak_a")
    assert too_short.exit_code == 1
    assert "No API key starts with 'ak_a' (give at least 7 characters)." in too_short.output
    wildcard = invoke(settings, "keys", "revoke", "ak_abc%")  # not a LIKE pattern
    assert wildcard.exit_code == 1
    assert all(key.revoked_at is None for key in stored_keys(db))

    one = invoke(settings, "keys", "revoke", "ak_abcd2")
    assert one.exit_code == 0, one.output
    assert [key.revoked_at is not None for key in stored_keys(db)] == [False, False, True]
