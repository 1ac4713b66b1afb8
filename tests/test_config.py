"""Configuration: every bad input gets an error that names where and why."""

from __future__ import annotations

import pytest
from twisted.python import usage

from kokoa.config import ConfigError
from kokoa.edge import tap as edge_tap
from kokoa.gateway import tap as gateway_tap
from kokoa.gateway._config import load_gateway_config
from kokoa.secrets import generate_secret, hash_secret, verify_secret

HASH = hash_secret("s3cret")
SITE = f'[[sites]]\nid = "a"\nsecret_hash = "{HASH}"\n'


def write(tmp_path, text: str):
    path = tmp_path / "kokoa.toml"
    path.write_text(text)
    return path


def gateway_options(*args: str) -> gateway_tap.Options:
    options = gateway_tap.Options()
    options.parseOptions(list(args))
    return options


def test_full_gateway_config(tmp_path):
    path = write(
        tmp_path,
        f"""
data_dir = "state"
tunnel = ["tcp:9443"]
tunnel_ws = "tcp:9444"
api = "tcp:9000:interface=127.0.0.1"
hostnames = ["gw.example.com"]
[limits]
max_concurrent_streams = 10
[keepalive]
ping_interval = 5
[[sites]]
id = "home"
secret_hash = "{HASH}"
[[resources]]
name = "ssh"
site = "home"
port = 2222
target = "[::1]:22"
""",
    )
    config = load_gateway_config(path)
    assert config.data_dir == tmp_path / "state"
    assert config.tunnel == ["tcp:9443"] and config.tunnel_ws == ["tcp:9444"]
    assert config.limits.max_concurrent_streams == 10
    assert config.ping_interval == 5
    (resource,) = config.resources
    assert resource.listen == "tcp:2222"
    assert (resource.target_host, resource.target_port, resource.target) == ("::1", 22, "[::1]:22")


def test_flags_override_the_file(tmp_path):
    path = write(tmp_path, 'tunnel = ["tcp:9443"]\n')
    options = gateway_options(
        "--config", str(path), "--tunnel", "tcp:1", "--tunnel-ws", "none", "--api", "none"
    )
    assert options.config.tunnel == ["tcp:1"]
    assert options.config.tunnel_ws == []
    assert options.config.api is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus = 1\n", "unknown key(s) bogus"),
        ("tunnel = 5\n", "tunnel must be a string or a list of strings"),
        ("[limits]\nmax_frame_size = 10\n", "max_frame_size must be between"),
        ("[limits]\nwindow = 10\n", "unknown key(s) window"),
        ("[keepalive]\nping_interval = -1\n", "ping_interval must be a number greater than 0"),
        ('[[sites]]\nid = "a"\nsecret_hash = "plain"\n', "secret_hash must be 'sha256:'"),
        (
            f'[[sites]]\nid = "a"\nsecret_hash = "{HASH}"\n[[sites]]\nid = "a"\nsecret_hash = "{HASH}"\n',
            "duplicate site",
        ),
        (
            '[[resources]]\nname = "r"\nsite = "nope"\nport = 1\ntarget = "h:1"\n',
            "site 'nope' is not defined",
        ),
        (
            SITE + '[[resources]]\nname = "r"\nsite = "a"\nport = 70000\ntarget = "h:1"\n',
            "port must be an integer from 1 to 65535",
        ),
        (
            SITE + '[[resources]]\nname = "r"\nsite = "a"\nport = 1\ntarget = "h"\n',
            "is not HOST:PORT",
        ),
        ("not toml [", "not valid TOML"),
        ("max_tunnels_per_site = 0.5\n", "max_tunnels_per_site must be a whole number of at least 1"),
        ('tls_cert = "cert.pem"\n', "tls_cert and tls_key go together"),
        ("migrate = 1\n", "migrate must be true or false"),
        ('[[sites]]\nid = "Bad Id"\nsecret_hash = "x"\n', "must be 1-63 lowercase letters"),
        ('[[sites]]\nid = "a"\nsecret_hash = "sha256:' + "z" * 64 + '"\n', "secret_hash must be 'sha256:'"),
    ],
)
def test_gateway_config_errors(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(usage.UsageError) as e:
        gateway_options("--config", str(path))
    assert message in str(e.value)
    assert str(path) in str(e.value) or "TOML" in str(e.value)


def test_none_turns_listeners_off_in_the_file(tmp_path):
    path = write(tmp_path, 'tunnel = "none"\ntunnel_ws = ["none"]\napi = "none"\n')
    config = gateway_options("--config", str(path)).config
    assert (config.tunnel, config.tunnel_ws, config.api) == ([], [], None)


def test_missing_config_file(tmp_path):
    with pytest.raises(usage.UsageError, match="no such file"):
        gateway_options("--config", str(tmp_path / "absent.toml"))


def test_tls_cert_needs_key():
    with pytest.raises(usage.UsageError, match="go together"):
        gateway_options("--tls-cert", "cert.pem")


@pytest.fixture
def edge_options(monkeypatch):
    def parse(args, env):
        monkeypatch.delenv("KOKOA_SITE_SECRET", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        options = edge_tap.Options()
        options.parseOptions(args)
        return options

    return parse


BASE = ["--gateway", "tls:gw.example.com:7443", "--site", "home"]


def test_edge_secret_from_environment_or_file(tmp_path, edge_options):
    assert edge_options(BASE, {"KOKOA_SITE_SECRET": "abc"}).config.secret == "abc"
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    config = edge_options([*BASE, "--secret-file", str(secret_file)], {}).config
    assert config.secret == "from-file"
    assert config.connections == 2


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--site", "home"], {"KOKOA_SITE_SECRET": "x"}, "--gateway is required"),
        (["--gateway", "tls:h:1"], {"KOKOA_SITE_SECRET": "x"}, "--site is required"),
        (BASE, {}, "no site secret"),
        ([*BASE, "--connections", "0"], {"KOKOA_SITE_SECRET": "x"}, "from 1 to 64"),
        ([*BASE, "--connections", "two"], {"KOKOA_SITE_SECRET": "x"}, "from 1 to 64"),
        (["--gateway", "http://h", "--site", "a"], {"KOKOA_SITE_SECRET": "x"}, "http://h"),
        ([*BASE, "--ca-file", "/nonexistent"], {"KOKOA_SITE_SECRET": "x"}, "cannot read CA file"),
        ([*BASE, "--fingerprint", "abc"], {"KOKOA_SITE_SECRET": "x"}, "invalid certificate fingerprint"),
        (
            [*BASE, "--insecure", "--fingerprint", "sha256:" + "a" * 64],
            {"KOKOA_SITE_SECRET": "x"},
            "choose one",
        ),
        ([*BASE, "--connect-timeout", "soon"], {"KOKOA_SITE_SECRET": "x"}, "not a number"),
    ],
)
def test_edge_option_errors(args, env, message, edge_options):
    with pytest.raises(usage.UsageError) as e:
        edge_options(args, env)
    assert message in str(e.value)


def test_edge_empty_secret_file(tmp_path, edge_options):
    empty = tmp_path / "secret"
    empty.write_text("\n")
    with pytest.raises(usage.UsageError, match="is empty"):
        edge_options([*BASE, "--secret-file", str(empty)], {})


def test_secrets_are_stored_hashed():
    secret = generate_secret()
    stored = hash_secret(secret)
    assert secret not in stored and stored.startswith("sha256:")
    assert verify_secret(secret, stored)
    assert not verify_secret(secret + "x", stored)
    assert not verify_secret(secret, "md5:abc")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[certificate]]\ncert = "missing.pem"\nkey = "missing.key"\n',
            r"certificate\[0\]: cert .*missing.pem. is not a readable file",
        ),
        ('[http_front]\nupstream_ca_file = "nope.pem"\n', "upstream_ca_file"),
        ("[http_front]\nmax_headers = 2\n", "max_headers must be a whole number of at least 8"),
        ("[http_front]\nheader_timeout = 0\n", "header_timeout must be a number greater than 0"),
        (
            "[http_front]\ninspector_ring_size = 0\n",
            "inspector_ring_size must be a whole number from 1 to 100000",
        ),
        ("[http_front]\ninspector_ring_size = 1e3\n", "inspector_ring_size must be a whole number from 1 to"),
        (
            "[http_front]\ninspector_max_watchers = -1\n",
            "inspector_max_watchers must be a whole number from 0",
        ),
        ("[http_front]\ninspector_max_watchers = true\n", "inspector_max_watchers must be a whole number"),
        ("[http_front]\ninspector_ring = 5\n", "inspector_ring"),
        ('[acme]\ndirectory = "ftp://x"\n', "acme directory must be an https:// URL"),
        ("[acme]\nagree_tos = 1\n", "directory is required"),
        ("https_dev_ca = 1\n", "https_dev_ca must be true or false"),
    ],
)
def test_bad_http_settings_are_refused_with_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_gateway_config(write(tmp_path, text))


def test_sighup_without_a_config_file_rereads_the_certificates_only():
    from twisted.internet import defer

    class Certificates:
        reloads = 0

        def reload(self):
            self.reloads += 1
            return defer.succeed([])

    certificates = Certificates()
    reloader = gateway_tap.ConfigReloader(None, None, None, None, certificates)
    reloader.reload()
    assert certificates.reloads == 1


def test_inspector_settings(tmp_path):
    config = load_gateway_config(write(tmp_path, ""))
    assert (config.http_front.inspector_ring_size, config.http_front.inspector_max_watchers) == (200, 32)
    text = "[http_front]\ninspector_ring_size = 50\ninspector_max_watchers = 0\n"
    config = load_gateway_config(write(tmp_path, text))
    assert (config.http_front.inspector_ring_size, config.http_front.inspector_max_watchers) == (50, 0)
