"""Which addresses a webhook may reach: the rule, the choice among a name's addresses,
registration's check, and the operator's allow list as the settings read it. Nothing
here connects anywhere: name resolution is replaced where a name is involved."""

from __future__ import annotations

import ipaddress
import socket

import pytest
import requests

from importer import webhook_targets
from importer.config import ConfigError, Settings
from importer.webhook_targets import (
    CheckedAddressAdapter,
    TargetRefused,
    address_refusal,
    choose_address,
    url_refusal,
)


def ip(text):
    return ipaddress.ip_address(text)


def networks(*cidrs):
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


@pytest.fixture
def resolved(monkeypatch):
    """``resolved["name"] = [addresses]``: what the resolver answers from now on (an
    unknown name does not resolve); ``resolved.calls`` counts the lookups."""

    class Answers(dict):
        calls = 0

    answers = Answers()

    def resolve(host, port):
        answers.calls += 1
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ip(address) for address in answers[host]]

    monkeypatch.setattr(webhook_targets, "resolve", resolve)
    return answers


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("10.0.0.1", "a private address"),
        ("172.16.5.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("100.64.0.1", "a carrier-grade NAT address"),
        ("100.127.255.254", "a carrier-grade NAT address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "a reserved address"),
        ("192.0.0.8", "a reserved address"),  # IETF protocol assignments
        ("2002:7f00:1::", "a reserved address"),  # 6to4 around 127.0.0.1
        ("93.184.215.14", None),
        ("8.8.8.8", None),
        ("100.128.0.1", None),  # just past the CGNAT block
        ("2606:4700:4700::1111", None),
    ],
)
def test_only_public_addresses_may_be_targets(address, reason):
    assert address_refusal(ip(address)) == reason


def test_an_allowed_network_lets_exactly_its_addresses_through():
    allowed = networks("10.20.0.0/16", "127.0.0.1/32")
    assert address_refusal(ip("10.20.30.40"), allowed) is None
    assert address_refusal(ip("::ffff:10.20.30.40"), allowed) is None
    assert address_refusal(ip("127.0.0.1"), allowed) is None
    assert address_refusal(ip("10.21.0.1"), allowed) == "a private address"
    assert address_refusal(ip("127.0.0.2"), allowed) == "a loopback address"
    assert address_refusal(ip("::1"), allowed) == "a loopback address"  # IPv4 loopback only


def test_a_literal_address_is_checked_without_resolving(resolved):
    with pytest.raises(TargetRefused, match=r"^169\.254\.169\.254 is a link-local address$"):
        choose_address("169.254.169.254", 80)
    with pytest.raises(TargetRefused, match=r"^::1 is a loopback address$"):
        choose_address("[::1]", 80)
    assert choose_address("127.0.0.1", 80, networks("127.0.0.0/8")) == ip("127.0.0.1")
    assert resolved.calls == 0


def test_a_name_gets_its_first_address_that_may_be_reached(resolved):
    resolved["mixed.example"] = ["10.0.0.7", "93.184.215.14", "93.184.215.15"]
    resolved["internal.example"] = ["10.0.0.7", "127.0.0.1"]

    assert choose_address("mixed.example", 443) == ip("93.184.215.14")
    with pytest.raises(TargetRefused, match=r"^internal\.example resolves to 10\.0\.0\.7, a priv"):
        choose_address("internal.example", 443)
    allowed = networks("127.0.0.0/8")
    assert choose_address("internal.example", 443, allowed) == ip("127.0.0.1")


def test_registration_refuses_a_url_whose_every_address_is_refused(resolved):
    resolved["internal.example"] = ["10.0.0.7"]
    resolved["public.example"] = ["93.184.215.14"]

    assert url_refusal("https://internal.example/hooks") == (
        "internal.example resolves to 10.0.0.7, a private address"
    )
    assert url_refusal("https://internal.example/hooks", networks("10.0.0.0/8")) is None
    assert url_refusal("https://public.example:8443/hooks") is None
    assert url_refusal("http://[fe80::1]:8080/") == "fe80::1 is a link-local address"
    # A name that does not resolve now is not refused: each delivery resolves it again.
    assert url_refusal("https://not-yet.example/hooks") is None


def test_https_connects_to_the_address_but_checks_the_certificate_against_the_name(resolved):
    resolved["hooks.partner.example"] = ["2606:4700:4700::1111"]
    adapter = CheckedAddressAdapter(is_https=True, allowed=())
    request = requests.Request("POST", "https://hooks.partner.example:8443/h").prepare()

    host_params, pool_kwargs = adapter.build_connection_pool_key_attributes(request, True)

    assert (host_params["host"], host_params["port"]) == ("[2606:4700:4700::1111]", 8443)
    assert pool_kwargs["server_hostname"] == "hooks.partner.example"  # SNI
    assert pool_kwargs["assert_hostname"] == "hooks.partner.example"
    assert request.headers["Host"] == "hooks.partner.example:8443"


def test_the_allow_list_is_read_from_the_environment():
    settings = Settings.from_env(
        {"IMPORTER_WEBHOOK_ALLOW_NETWORKS": " 10.0.0.0/8, fd00::/8 ,127.0.0.1"}
    )
    assert settings.webhook_allow_networks == networks("10.0.0.0/8", "fd00::/8", "127.0.0.1/32")
    assert Settings.from_env({}).webhook_allow_networks == ()
    for bad in ("10.0.0.1/8", "intranet", "10.0.0.0/33"):
        with pytest.raises(ConfigError, match="IMPORTER_WEBHOOK_ALLOW_NETWORKS"):
            Settings.from_env({"IMPORTER_WEBHOOK_ALLOW_NETWORKS": bad})
