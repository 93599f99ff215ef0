"""``importer keys create|list|revoke``: an operator manages the API keys of an org.

An org has several keys, so one is rotated without downtime: create a new key, switch
the client to it, revoke the old one. A revoked key stops working within
``importer.orgs.REVOCATION_SECONDS`` (10 s). Like the other operator commands they read
``DATABASE_URL``, print for a person, and one JSON object with ``--json``.

``ORG`` is an org's id (``cborg_...``) or its name when no other org has that name.
"""

from __future__ import annotations

from typing import Any

import click
import orjson
from sqlalchemy.orm import Session

from importer import orgs
from importer.config import ConfigError, Settings
from importer.db import Database, unix
from importer.formatting import format_time, table
from importer.models import ApiKey, Org


def _database() -> Database:
    try:
        return Database.from_settings(Settings.from_env())
    except ConfigError as error:
        raise click.UsageError(str(error)) from None


@click.group("keys")
def keys_group() -> None:
    """Create, list and revoke an org's API keys."""


def _org(session: Session, text: str) -> Org:
    found = orgs.orgs_named_by(session, text)
    if not found:
        raise click.ClickException(f"No org with the id or name {text!r}.")
    if len(found) > 1:
        ids = ", ".join(org.id for org in found)
        raise click.ClickException(f"{len(found)} orgs are named {text!r} ({ids}): give its id.")
    return found[0]


def _key_item(key: ApiKey) -> dict[str, Any]:
    return {
        "prefix": key.key_prefix,
        "name": key.name,
        "org_id": key.org_id,
        "created_at": unix(key.created_at),
        "last_used_at": unix(key.last_used_at),
        "revoked_at": unix(key.revoked_at),
        "active": key.revoked_at is None,
    }


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(orjson.dumps(data).decode())


@keys_group.command("create")
@click.argument("org")
@click.option("--name", help="What to call the key, e.g. the client that will hold it.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of sentences.")
def create_key(org: str, name: str | None, as_json: bool) -> None:
    """Create a new API key for ORG (its id, or its name) and print it, this once."""
    if name is not None:
        problem = orgs.key_name_problem(name)
        if problem is not None:
            raise click.BadParameter(problem, param_hint="--name")
    database = _database()
    try:
        with database.session() as session:
            owner = _org(session, org)
            issued = orgs.issue_key(session, owner, name)
            item = {**_key_item(issued.row), "org_name": owner.name, "api_key": issued.api_key}
    finally:
        database.dispose()
    if as_json:
        _echo_json(item)
        return
    named = f" ({item['name']})" if item["name"] else ""
    click.echo(f"Created API key {item['prefix']}{named} for org {item['org_id']} ({owner.name}).")
    click.echo("It is shown this once; store it now:")
    click.echo("")
    click.echo(f"  {issued.api_key}")
    click.echo("")
    click.echo("To rotate: switch the client to it, then run importer keys revoke OLD_PREFIX.")


@keys_group.command("list")
@click.argument("org")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def list_keys(org: str, as_json: bool) -> None:
    """The API keys of ORG (its id, or its name), revoked ones too, oldest first."""
    database = _database()
    try:
        with database.session() as session:
            owner = _org(session, org)
            items = [_key_item(key) for key in orgs.org_keys(session, owner.id)]
    finally:
        database.dispose()
    if as_json:
        _echo_json({"org_id": owner.id, "org_name": owner.name, "items": items})
        return
    active = sum(1 for item in items if item["active"])
    click.echo(f"API keys of org {owner.id} ({owner.name}): {active} active, {len(items)} in all")
    if not items:
        return
    click.echo(
        table(
            ["PREFIX", "NAME", "CREATED", "LAST USED", "REVOKED"],
            [
                [
                    item["prefix"],
                    item["name"] or "-",
                    format_time(item["created_at"]),
                    format_time(item["last_used_at"]),
                    format_time(item["revoked_at"]),
                ]
                for item in items
            ],
        )
    )


@keys_group.command("revoke")
@click.argument("key_prefix")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a sentence.")
def revoke_key(key_prefix: str, as_json: bool) -> None:
    """Revoke the API key that KEY_PREFIX (as `importer keys list` shows it, or the
    key itself) names. It stops working within 10 seconds."""
    database = _database()
    try:
        with database.session() as session:
            found = orgs.keys_named_by(session, key_prefix)
            if not found:
                shortest = orgs.MIN_PREFIX_QUERY_LENGTH
                hint = (
                    f" (give at least {shortest} characters)" if len(key_prefix) < shortest else ""
                )
                raise click.ClickException(f"No API key starts with {key_prefix!r}{hint}.")
            if len(found) > 1:
                listed = "; ".join(
                    f"{key.key_prefix} of {key.org_id}" + (f" ({key.name})" if key.name else "")
                    for key in found
                )
                raise click.ClickException(
                    f"{key_prefix!r} names {len(found)} keys: {listed}. Give more of the prefix."
                )
            (key,) = found
            revoked_now = orgs.revoke_key(session, key)
            item = _key_item(key)
            left = orgs.active_key_count(session, key.org_id)
    finally:
        database.dispose()
    if as_json:
        _echo_json({**item, "revoked_now": revoked_now, "active_keys_left": left})
        return
    named = f" ({item['name']})" if item["name"] else ""
    if not revoked_now:
        click.echo(
            f"API key {item['prefix']}{named} of org {item['org_id']} was already revoked "
            f"at {format_time(item['revoked_at'])}."
        )
        return
    click.echo(
        f"Revoked API key {item['prefix']}{named} of org {item['org_id']}. It stops working "
        f"within {orgs.REVOCATION_SECONDS:g} seconds."
    )
    if left == 0:
        click.echo(
            f"The org has no active key left: importer keys create {item['org_id']}", err=True
        )
