"""The command line's HTTP resource settings: ``kokoa apply -f`` (parsing with errors that name the line,
then planning and applying against a live API) and ``kokoa resource add`` with several targets.

The API runs in another process (``kokoa.api._devserver`` over SQLite), since the command line's
client blocks; no gateway is needed.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kokoa.cli import main
from kokoa.cli._apply import ApplyError, parse
from kokoa.cli._client import Api

pytestmark = pytest.mark.sans_io  # subprocesses and blocking calls only: no reactor in this process


# -- parsing -----------------------------------------------------------------------------------------

HTTP_YAML = """\
sites:
  - name: home
resources:
  - name: app
    kind: http
    host: app.example.com
    lb_method: least_connections
    sticky: true
    redirect_https: true
    hsts_max_age: 31536000
    targets:
      - {site: home, target: "http://10.0.0.5:8080", weight: 2}
      - site: home
        target: "https://10.0.0.6:8443"
        tls_verify: false
        tls_server_name: App.Lan.
        health_check: {enabled: true, path: /healthz, expected_status: "200, 204", interval: 10}
      - {site: home, target: "https://10.0.0.7", tls_server_name: null, health_check: {expected_status: 200}}
"""


def test_apply_reads_http_settings():
    desired = parse(HTTP_YAML, "kokoa.yaml")
    (app,) = desired.resources
    assert app.settings == {
        "lb_method": "least_connections",
        "sticky": True,
        "redirect_https": True,
        "hsts_max_age": 31536000,
    }
    plain, secure, default_name = app.targets
    assert (plain.scheme, plain.settings) == ("http", {"weight": 2})
    assert (secure.scheme, secure.port) == ("https", 8443)
    assert secure.settings == {
        "tls_verify": False,
        "tls_server_name": "app.lan",
        "health_check": {"enabled": True, "path": "/healthz", "expected_status": "200,204", "interval": 10},
    }
    assert default_name.settings == {"tls_server_name": None, "health_check": {"expected_status": "200"}}
    assert default_name.port == 443


def test_settings_left_out_are_not_stated():
    desired = parse("resources:\n  - {name: a, kind: http, host: a.example.com}\n", "kokoa.yaml")
    assert desired.resources[0].settings == {}


TCP_RESOURCE = "sites:\n  - name: home\nresources:\n  - name: r\n    port: 22\n"
HTTP_RESOURCE = "sites:\n  - name: home\nresources:\n  - name: r\n    kind: http\n    host: r.example.com\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TCP_RESOURCE + "    sticky: true\n", "kokoa.yaml:6: sticky is for http resources"),
        (TCP_RESOURCE + "    hsts_max_age: 60\n", "kokoa.yaml:6: hsts_max_age is for http resources"),
        (HTTP_RESOURCE + "    lb_method: random\n", "kokoa.yaml:7: lb_method must be round_robin or"),
        (HTTP_RESOURCE + "    sticky: yes please\n", "kokoa.yaml:7: sticky must be true or false"),
        (
            HTTP_RESOURCE + "    hsts_max_age: -1\n",
            "kokoa.yaml:7: hsts_max_age must be a whole number from 0",
        ),
        (HTTP_RESOURCE + "    hsts_max_age: 63072001\n", "kokoa.yaml:7: hsts_max_age must be a whole"),
        (HTTP_RESOURCE + "    sticcky: true\n", "kokoa.yaml:7: unknown key 'sticcky'"),
        (
            HTTP_RESOURCE + "    targets:\n      - {site: home, target: 'http://h:1', tls_verify: false}\n",
            "kokoa.yaml:8: tls_verify is for https targets",
        ),
        (
            TCP_RESOURCE + "    targets:\n      - {site: home, target: 'h:1', tls_server_name: a.b}\n",
            "kokoa.yaml:7: tls_server_name is for https targets",
        ),
        (
            HTTP_RESOURCE + "    targets:\n      - {site: home, target: 'http://h:1', weight: 1001}\n",
            "kokoa.yaml:8: weight must be a whole number from 0 to 1000",
        ),
        (
            HTTP_RESOURCE + "    targets:\n      - {site: home, target: 'http://h:1', wait: 1}\n",
            "kokoa.yaml:8: unknown key 'wait'",
        ),
        (
            HTTP_RESOURCE
            + "    targets:\n      - site: home\n        target: 'http://h:1'\n"
            + "        health_check: {enabled: true, colour: red}\n",
            "kokoa.yaml:10: unknown key 'colour'",
        ),
        (
            HTTP_RESOURCE
            + "    targets:\n      - site: home\n        target: 'http://h:1'\n"
            + "        health_check:\n          expected_status: [200]\n",
            "kokoa.yaml:11: expected_status must be a single value",
        ),
        (
            HTTP_RESOURCE
            + "    targets:\n      - site: home\n        target: 'http://h:1'\n"
            + "        health_check:\n          expected_status: true\n",
            "kokoa.yaml:11: expected_status is codes and ranges",
        ),
        (
            HTTP_RESOURCE
            + "    targets:\n      - site: home\n        target: 'http://h:1'\n"
            + "        health_check: {interval: 0}\n",
            "kokoa.yaml:10: interval must be a whole number from 1 to 3600",
        ),
        (
            TCP_RESOURCE
            + "    targets:\n      - site: home\n        target: 'h:1'\n"
            + "        health_check: {path: /x}\n",
            "kokoa.yaml:9: health_check.path is for http targets",
        ),
    ],
)
def test_apply_errors_name_the_line(text, message):
    with pytest.raises(ApplyError) as e:
        parse(text, "kokoa.yaml")
    assert message in str(e.value)


# -- against a live API ------------------------------------------------------------------------------


@dataclass
class Live:
    url: str
    key_file: Path
    api: Api
    org: str
    tmp: Path

    def kokoa(self, *args: str) -> int:
        return main(["--api", self.url, "--key-file", str(self.key_file), *args])

    def resources(self) -> dict[str, dict]:
        return {r["name"]: r for r in self.api.all(f"/orgs/{self.org}/resources")}

    def targets(self, resource: dict) -> list[dict]:
        return self.api.all(f"/orgs/{self.org}/resources/{resource['id']}/targets")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    key_file, log = tmp_path / "key", tmp_path / "devserver.log"
    command = [
        sys.executable,
        "-m",
        "kokoa.api._devserver",
        "--database",
        f"sqlite:///{tmp_path / 'kokoa.db'}",
        "--key-file",
        str(key_file),
    ]
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else b""
        assert line, f"the dev server did not start: {log.read_text()}"
        url = f"http://127.0.0.1:{json.loads(line)['port']}"
        api = Api(url, key_file.read_text())
        org = api.post("/orgs", {"name": "Acme"})["id"]
        yield Live(url, key_file, api, org, tmp_path)
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()  # type: ignore[union-attr]
    assert "Traceback" not in log.read_text()


def test_apply_creates_changes_and_keeps_http_settings(live, capsys):
    spec = live.tmp / "kokoa.yaml"
    spec.write_text(HTTP_YAML)
    assert live.kokoa("apply", "-f", str(spec)) == 0
    app = live.resources()["app"]
    assert (app["lb_method"], app["sticky"], app["redirect_https"], app["hsts_max_age"]) == (
        "least_connections",
        True,
        True,
        31536000,
    )
    plain, secure, default_name = live.targets(app)
    assert (plain["weight"], plain["tls_verify"]) == (2, True)
    assert (secure["tls_verify"], secure["tls_server_name"]) == (False, "app.lan")
    assert (secure["health_check"]["expected_status"], secure["health_check"]["interval"]) == ("200,204", 10)
    assert default_name["health_check"]["expected_status"] == "200"
    capsys.readouterr()
    assert live.kokoa("apply", "-f", str(spec)) == 0
    assert "nothing to change" in capsys.readouterr().out

    spec.write_text(
        HTTP_YAML.replace("sticky: true", "sticky: false")
        .replace("weight: 2", "weight: 5")
        .replace("interval: 10", "interval: 20")
    )
    assert live.kokoa("apply", "-f", str(spec)) == 0
    out = capsys.readouterr().out
    assert "~ resource app: sticky True -> False" in out
    assert "~ target home 10.0.0.5:8080 of app: weight 2 -> 5" in out
    assert "~ target home 10.0.0.6:8443 of app: health_check.interval 10 -> 20" in out
    secure = live.targets(live.resources()["app"])[1]
    assert (secure["health_check"]["interval"], secure["health_check"]["expected_status"]) == (20, "200,204")

    # Settings the file leaves out keep their value on the gateway.
    spec.write_text(
        "sites:\n  - name: home\nresources:\n  - name: app\n    kind: http\n    host: app.example.com\n"
        "    targets:\n      - {site: home, target: 'http://10.0.0.5:8080'}\n"
    )
    assert live.kokoa("apply", "-f", str(spec)) == 0
    assert "nothing to change" in capsys.readouterr().out
    assert live.resources()["app"]["lb_method"] == "least_connections"


def test_apply_reports_what_the_gateway_refuses(live, capsys):
    spec = live.tmp / "kokoa.yaml"
    spec.write_text(
        HTTP_RESOURCE + "    targets:\n      - site: home\n        target: 'https://h:1'\n"
        "        tls_server_name: '10.0.0.1'\n"
    )
    assert live.kokoa("apply", "-f", str(spec)) == 2
    err = capsys.readouterr().err
    assert "422" in err and "tls_server_name" in err


def test_resource_add_takes_several_targets(live, capsys):
    live.api.post(f"/orgs/{live.org}/sites", {"name": "home"})
    code = live.kokoa(
        "resource",
        "add",
        "app",
        "--site",
        "home",
        "--host",
        "app.example.com",
        "--target",
        "http://10.0.0.5:8080",
        "--target",
        "https://app.lan",
        "--lb-method",
        "least_connections",
        "--sticky",
        "--hsts-max-age",
        "600",
    )
    assert code == 0, capsys.readouterr().err
    assert "-> http://10.0.0.5:8080, https://app.lan at site 'home'" in capsys.readouterr().out
    app = live.resources()["app"]
    assert (app["lb_method"], app["sticky"], app["redirect_https"], app["hsts_max_age"]) == (
        "least_connections",
        True,
        False,
        600,
    )
    assert [(t["scheme"], t["host"], t["port"]) for t in live.targets(app)] == [
        ("http", "10.0.0.5", 8080),
        ("https", "app.lan", 443),
    ]


def test_resource_add_errors_are_clear_and_leave_nothing(live, capsys):
    live.api.post(f"/orgs/{live.org}/sites", {"name": "home"})
    base = ["resource", "add", "x", "--site", "home"]
    assert live.kokoa(*base, "--tcp-port", "2222", "--target", "h:1", "--target", "h:2") == 2
    assert "a TCP resource takes one --target" in capsys.readouterr().err
    assert live.kokoa(*base, "--tcp-port", "2222", "--target", "h:1", "--sticky") == 2
    assert "--sticky is for HTTP resources" in capsys.readouterr().err
    assert live.kokoa(*base, "--host", "x.example.com", "--target", "http://h:1", "--target", "ftp://h") == 2
    assert "--target 'ftp://h'" in capsys.readouterr().err
    # The second target is refused by the gateway (the same as the first): the resource goes too.
    assert (
        live.kokoa(*base, "--host", "x.example.com", "--target", "http://h:1", "--target", "http://h:1") == 2
    )
    assert "409" in capsys.readouterr().err
    assert live.resources() == {}


def test_resource_grant_by_role_and_by_member(live, capsys):
    live.api.post(f"/orgs/{live.org}/sites", {"name": "home"})
    assert (
        live.kokoa(
            "resource", "add", "app", "--site", "home", "--host", "app.example.com", "--target", "http://h:1"
        )
        == 0
    )
    assert live.resources()["app"]["public"] is False  # HTTP resources are protected unless --public
    assert live.kokoa("resource", "grant", "app", "--role", "Member") == 0
    assert "role 'Member' may now reach 'app'" in capsys.readouterr().out
    user = live.api.post("/users", {"email": "zoe@example.com", "password": "long enough"})
    roles = {r["name"]: r["id"] for r in live.api.all(f"/orgs/{live.org}/roles")}
    live.api.post(f"/orgs/{live.org}/members", {"user_id": user["id"], "role_id": roles["Admin"]})
    assert live.kokoa("resource", "grant", "app", "--user", "zoe@example.com") == 0
    grants = live.api.all(f"/orgs/{live.org}/resources/{live.resources()['app']['id']}/grants")
    assert {g["role_id"] for g in grants} >= {roles["Member"]} and user["id"] in {
        g["user_id"] for g in grants
    }
    capsys.readouterr()
    assert live.kokoa("resource", "grant", "app", "--role", "Nobody") == 2
    assert "no role 'Nobody'" in capsys.readouterr().err
    assert live.kokoa("resource", "grant", "app", "--user", "nobody@example.com") == 2
    assert live.kokoa("resource", "grant", "nothing", "--role", "Member") == 2
    assert (
        live.kokoa(
            "resource",
            "add",
            "open",
            "--site",
            "home",
            "--host",
            "o.example.com",
            "--target",
            "http://h:1",
            "--public",
        )
        == 0
    )
    assert live.resources()["open"]["public"] is True


def test_init_without_a_password_prints_a_one_time_link(tmp_path, capsys):
    from kokoa import store as st
    from kokoa.cli import main as kokoa_main

    data = tmp_path / "data"
    assert (
        kokoa_main(
            [
                "-d",
                str(data),
                "init",
                "--email",
                "owner@example.com",
                "--login-url",
                "https://login.example.com",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    token = out.split("https://login.example.com/setup?token=", 1)[1].split()[0]
    engine, _ = st.open_engine(st.database_url(data, None))
    try:
        with engine.begin() as conn:
            user = st.peek_user_token(conn, token, "setup")
            assert user is not None and user.email == "owner@example.com" and user.status == "invited"
            assert not user.has_password
    finally:
        engine.dispose()
