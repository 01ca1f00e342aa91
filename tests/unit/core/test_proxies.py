"""Which proxy a connection takes: the environment variables, NO_PROXY, the per-upstream setting, and masking."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from gateway.core.config import load_settings
from gateway.core.proxies import NoProxy, ProxyEnvironment, ProxyUrl, choose_proxy, parse_proxy_url
from gateway.core.upstream_config import UpstreamConfig

PASSWORD = "hunter2-very-secret"


@pytest.mark.parametrize(("entries", "host", "port", "direct"), [
    ("example.com", "example.com", 443, True),
    ("example.com", "api.example.com", 443, True),
    ("example.com", "badexample.com", 443, False),  # a suffix only at a dot
    (".example.com", "example.com", 443, True),
    ("*.example.com", "a.b.example.com", 443, True),
    ("EXAMPLE.com.", "Api.Example.COM.", 443, True),  # case and a trailing dot do not matter
    ("example.com:8443", "api.example.com", 8443, True),
    ("example.com:8443", "api.example.com", 443, False),
    ("*", "anything.at.all", 1, True),
    ("a.test,  b.test c.test", "c.test", 80, True),  # commas and spaces
    ("10.0.0.0/8", "10.2.3.4", 80, True),
    ("10.0.0.0/8", "11.2.3.4", 80, False),
    ("10.0.0.0/8", "ten.example", 80, False),  # a name is never resolved for this
    ("127.0.0.1", "127.0.0.1", 9000, True),
    ("127.0.0.1:9000", "127.0.0.1", 9001, False),
    ("::1", "::1", 80, True),
    ("[::1]:8080", "::1", 8080, True),
    ("fd00::/8", "fd12::5", 443, True),
    ("fd00::/8", "10.0.0.1", 443, False),
    ("", "example.com", 443, False),
    ("localhost", "127.0.0.1", 80, False),  # loopback is not special: list what goes direct
])
def test_no_proxy_entries(entries: str, host: str, port: int, direct: bool) -> None:
    assert NoProxy.parse(entries).covers(host, port) is direct


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "example.com:http", "example.com:70000"])
def test_an_unreadable_no_proxy_entry_is_refused_by_name(entry: str) -> None:
    with pytest.raises(ValueError, match="NO_PROXY"):
        NoProxy.parse(f"ok.example, {entry}")


def test_the_environment_lower_case_first_then_upper_then_all_proxy() -> None:
    env = ProxyEnvironment.from_environ({
        "https_proxy": "http://lower:3128", "HTTPS_PROXY": "http://upper:3128",
        "HTTP_PROXY": "", "ALL_PROXY": "all.corp:8080", "NO_PROXY": "internal.corp",
    })
    assert env.proxy_for("https://router.huggingface.co") == ProxyUrl("lower", 3128)
    assert env.proxy_for("http://tgi.example:8080/v1") == ProxyUrl("all.corp", 8080)  # empty HTTP_PROXY: unset
    assert env.proxy_for("https://tgi.internal.corp") is None
    assert ProxyEnvironment.from_environ({}).proxy_for("https://router.huggingface.co") is None


def test_a_proxy_url_is_parsed_and_its_credentials_never_shown() -> None:
    proxy = parse_proxy_url(f"http://corp%5Cbob:{PASSWORD}%40x@proxy.corp:3128/", "HTTPS_PROXY")
    assert (proxy.host, proxy.port, proxy.username) == ("proxy.corp", 3128, "corp\\bob")
    assert proxy.password == PASSWORD + "@x"
    assert proxy.authorization == "Basic Y29ycFxib2I6aHVudGVyMi12ZXJ5LXNlY3JldEB4"
    for shown in (str(proxy), repr(proxy), proxy.shown, f"{proxy}"):
        assert PASSWORD not in shown and "bob" not in shown and "proxy.corp:3128" in shown
    assert parse_proxy_url("proxy.corp", "x") == ProxyUrl("proxy.corp", 80)  # no scheme: http, port 80
    assert parse_proxy_url("http://[fd00::1]:3128", "x").shown == "http://[fd00::1]:3128"
    assert ProxyUrl("p", 1).authorization is None


@pytest.mark.parametrize(("url", "problem"), [
    (f"https://bob:{PASSWORD}@proxy:443", "https:// proxies are not supported"),
    (f"socks5://bob:{PASSWORD}@proxy:1080", "socks5:// proxies are not supported"),
    (f"http://bob:{PASSWORD}@proxy:port", "not a proxy URL"),
    (f"http://bob:{PASSWORD}@proxy:3128/path", "no path"),
    (f"http://bob:{PASSWORD}@:3128", "names no host"),
])
def test_a_bad_proxy_url_is_refused_without_quoting_it(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        parse_proxy_url(url, "HTTPS_PROXY")
    assert PASSWORD not in str(caught.value) and str(caught.value).startswith("HTTPS_PROXY: ")


def test_the_upstream_setting_wins_and_none_ignores_the_environment() -> None:
    env = ProxyEnvironment.from_environ({"HTTPS_PROXY": "http://env:3128", "NO_PROXY": "router.huggingface.co"})
    own = ProxyUrl("own", 8080)
    assert choose_proxy(own, env, "https://router.huggingface.co") == own  # NO_PROXY is for the environment's
    assert choose_proxy(False, env, "https://elsewhere.example") is None
    assert choose_proxy(None, env, "https://elsewhere.example") == ProxyUrl("env", 3128)
    assert choose_proxy(None, env, "https://router.huggingface.co") is None


@pytest.mark.parametrize(("written", "read"), [
    ("none", False), ("false", False), ("Off", False), (False, False), (None, None), ("", None),
    ("http://p:1", ProxyUrl("p", 1)),
])
def test_the_proxy_setting_as_written(written: object, read: object) -> None:
    assert UpstreamConfig.model_validate({"proxy": written}).proxy == read


def test_configuration_errors_and_dumps_never_hold_the_proxy_password(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as caught:
        load_settings(None, upstreams={"hf": {"proxy": f"socks5://bob:{PASSWORD}@p:1"}})
    assert PASSWORD not in str(caught.value) and "upstreams.hf.proxy" in str(caught.value).replace("\n", ".")
    with pytest.raises(ValidationError) as caught:
        load_settings(None, upstreams={"hf": {"proxy": True}})
    assert "none / false" in str(caught.value)
    monkeypatch.setenv("HTTPS_PROXY", f"https://bob:{PASSWORD}@p:1")
    with pytest.raises(ValidationError) as caught:
        load_settings(None)
    assert PASSWORD not in str(caught.value) and "HTTPS_PROXY: https:// proxies" in str(caught.value)
    monkeypatch.setenv("HTTPS_PROXY", f"http://bob:{PASSWORD}@p:1")
    settings = load_settings(None, upstreams={"a": {}, "b": {"proxy": f"http://bob:{PASSWORD}@q:2"}})
    assert PASSWORD not in repr(settings) and PASSWORD not in settings.model_dump_json()
    assert settings.model_dump()["upstreams"]["b"]["proxy"] == "http://***@q:2"


def test_the_environment_is_read_once_when_the_settings_are_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://first:3128")
    settings = load_settings(None)
    monkeypatch.setenv("HTTPS_PROXY", "http://second:3128")
    up = settings.upstreams["hf"]
    assert up.proxy_environment.proxy_for(up.base_url) == ProxyUrl("first", 3128)
    copy = up.model_copy(update={"base_url": "https://ep.example"})  # as a managed endpoint re-aims
    assert copy.proxy_environment.proxy_for(copy.base_url) == ProxyUrl("first", 3128)
    assert UpstreamConfig().proxy_environment == ProxyEnvironment()  # built alone: no environment


def test_ca_file_must_exist() -> None:
    with pytest.raises(ValidationError, match="no such file"):
        UpstreamConfig.model_validate({"ca_file": "/nonexistent/ca.pem"})


def test_the_readme_example_does_what_its_comments_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section = (Path(__file__).resolve().parents[3] / "README.md").read_text().split("## Behind a corporate proxy")[1]
    console, config = re.findall(r"```(?:console|yaml)\n(.*?)```", section, re.S)[:2]
    for name, value in re.findall(r"^export (\w+)=(\S+)", console, re.M):
        monkeypatch.setenv(name, value)
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    settings = load_settings(None, **yaml.safe_load(config.replace("/etc/ssl/corp-ca.pem", str(ca))))
    chosen = {name: choose_proxy(up.proxy, up.proxy_environment, up.base_url)
              for name, up in settings.upstreams.items()}
    assert chosen == {"hf": ProxyUrl("proxy.corp", 3128, "alice", "s3cret"), "tei": None,
                      "other": ProxyUrl("other-proxy.corp", 8080), "local": None,
                      "lab": ProxyUrl("proxy.corp", 3128, "alice", "s3cret")}
