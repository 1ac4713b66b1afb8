"""``kokoa apply -f kokoa.yaml``: make the organization's sites and resources match a file.

The file (YAML)::

    sites:
      - name: home
    resources:
      - name: ssh
        kind: tcp            # tcp (default) or http
        port: 2222           # tcp: the public port
        enabled: true
        targets:
          - site: home
            target: 127.0.0.1:22
      - name: app
        kind: http
        host: app.example.com
        path: /
        lb_method: least_connections   # http only: or round_robin (the default)
        sticky: true                   # http only: pin clients to a target by cookie
        redirect_https: true           # http only: plain HTTP answers with a redirect to https
        hsts_max_age: 31536000         # http only: seconds of Strict-Transport-Security (0: none)
        public: false                  # http only: true lets anyone in without signing in (default false)
        targets:
          - {site: home, target: "http://10.0.0.5:8080", weight: 2}
          - site: home
            target: "https://10.0.0.6:8443"
            tls_verify: false          # https targets only (default true)
            tls_server_name: app.lan   # https targets only: SNI and the name verified
            health_check: {enabled: true, path: /healthz, expected_status: "200,204"}
        grants:              # who may reach it: roles by name, users by email or id
          - role: Admin
          - user: ann@example.com
        rules:               # evaluated by priority, lowest first
          - {priority: 10, action: allow, cidr: 10.0.0.0/8}
          - {priority: 20, action: deny, path: "/admin*"}

Sites and resources are matched by name; targets by site and address. Applying creates what
is missing and changes what differs; with ``--prune`` it also deletes resources and targets
that the file does not list (never sites: a site's secret cannot be recreated). A resource that
lists ``grants`` or ``rules`` gets exactly those. Applying the same file twice changes nothing.
Every error names the line.

The settings ``lb_method``, ``sticky``, ``redirect_https``, ``hsts_max_age`` (resources) and
``weight``, ``tls_verify``, ``tls_server_name``, ``health_check`` (targets) are compared only when
the file states them: left out, they keep the value they have on the gateway (the default for what
the file creates). Write the default to go back to it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import yaml

from kokoa.config import ConfigError, parse_host_port
from kokoa.store import LB_METHODS, MAX_HSTS_MAX_AGE, MAX_WEIGHT

from ._client import Api, ApiError
from ._commands import api_for, organization


class ApplyError(ApiError):
    """The file is wrong; the message names the line."""


@dataclass
class TargetSpec:
    site: str
    host: str
    port: int
    scheme: str
    line: int
    settings: dict = field(default_factory=dict)  # weight, tls_*, health_check: those the file states


@dataclass
class ResourceSpec:
    name: str
    kind: str
    line: int
    port: int | None = None
    host: str | None = None
    path: str | None = None
    enabled: bool = True
    targets: list[TargetSpec] = field(default_factory=list)
    grants: list[tuple[str, str, int]] | None = None  # (role|user, name, line)
    rules: list[dict] | None = None
    settings: dict = field(default_factory=dict)  # the HTTP settings the file states


@dataclass
class Desired:
    sites: dict[str, tuple[bool, int]]  # name -> (enabled, line)
    resources: list[ResourceSpec]


# ----------------------------------------------------------------------------- parsing


def parse(text: str, source: str) -> Desired:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ApplyError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if root is None:
        return Desired({}, [])
    top = _mapping(root, source, {"sites", "resources"})
    sites: dict[str, tuple[bool, int]] = {}
    for node in _sequence(top.get("sites"), source, "sites"):
        entry = _mapping(node, source, {"name", "enabled"})
        name = _string(entry, "name", node, source, required=True)
        if name in sites:
            raise ApplyError(f"{_at(source, node)}: site {name!r} is listed twice")
        sites[name] = (_bool(entry, "enabled", node, source, True), _line(node))
    resources: list[ResourceSpec] = []
    for node in _sequence(top.get("resources"), source, "resources"):
        resources.append(_resource(node, source, sites))
    names = [r.name for r in resources]
    for r in resources:
        if names.count(r.name) > 1:
            raise ApplyError(f"{source}:{r.line}: resource {r.name!r} is listed twice")
    return Desired(sites, resources)


#: HTTP resources' settings (compared only when the file states them).
_HTTP_SETTINGS = ("lb_method", "sticky", "redirect_https", "hsts_max_age", "public")
_RESOURCE_KEYS = {
    "name",
    "kind",
    "port",
    "host",
    "path",
    "enabled",
    "targets",
    "grants",
    "rules",
    *_HTTP_SETTINGS,
}
_RULE_KEYS = {"priority", "action", "cidr", "path", "method", "enabled"}
_TARGET_KEYS = {"site", "target", "weight", "tls_verify", "tls_server_name", "health_check"}
_HEALTH_CHECK_INTEGERS = {
    "interval": (1, 3600),
    "timeout": (1, 300),
    "healthy_threshold": (1, 100),
    "unhealthy_threshold": (1, 100),
}
_HEALTH_CHECK_KEYS = {"enabled", "path", "expected_status", *_HEALTH_CHECK_INTEGERS}


def _resource(node, source: str, sites: dict) -> ResourceSpec:
    entry = _mapping(node, source, _RESOURCE_KEYS)
    spec = ResourceSpec(
        name=_string(entry, "name", node, source, required=True),
        kind=_string(entry, "kind", node, source) or "tcp",
        line=_line(node),
        enabled=_bool(entry, "enabled", node, source, True),
    )
    if spec.kind == "tcp":
        spec.port = _port(entry, "port", node, source)
        for key in ("host", "path", *_HTTP_SETTINGS):
            if key in entry:
                raise ApplyError(f"{_at(source, entry[key])}: {key} is for http resources")
    elif spec.kind == "http":
        spec.host = _string(entry, "host", node, source, required=True)
        spec.path = _string(entry, "path", node, source) or "/"
        if "port" in entry:
            raise ApplyError(f"{_at(source, entry['port'])}: port is for tcp resources")
        spec.settings = _http_settings(entry, node, source)
    else:
        raise ApplyError(f"{_at(source, entry['kind'])}: kind must be tcp or http, not {spec.kind!r}")
    for target_node in _sequence(entry.get("targets"), source, "targets"):
        target = _mapping(target_node, source, _TARGET_KEYS)
        site = _string(target, "site", target_node, source, required=True)
        if site not in sites:
            raise ApplyError(f"{_at(source, target['site'])}: site {site!r} is not listed under sites")
        address = _string(target, "target", target_node, source, required=True)
        parsed = _target(address, spec.kind, site, target["target"], source)
        parsed.settings = _target_settings(target, target_node, parsed.scheme, source)
        spec.targets.append(parsed)
    if "grants" in entry:
        spec.grants = []
        for grant_node in _sequence(entry["grants"], source, "grants"):
            grant = _mapping(grant_node, source, {"role", "user"})
            if len(grant) != 1:
                raise ApplyError(f"{_at(source, grant_node)}: a grant names one role or one user")
            (kind,) = grant
            spec.grants.append(
                (kind, _string(grant, kind, grant_node, source, required=True), _line(grant_node))
            )
    if "rules" in entry:
        spec.rules = []
        for rule_node in _sequence(entry["rules"], source, "rules"):
            rule = _mapping(rule_node, source, _RULE_KEYS)
            priority = _scalar(rule, "priority", source)
            if priority is None or _integer(priority) is None:
                raise ApplyError(f"{_at(source, rule_node)}: priority must be a whole number")
            if any(r["priority"] == _integer(priority) for r in spec.rules):
                raise ApplyError(
                    f"{_at(source, priority)}: another rule of {spec.name!r} has priority {priority.value}"
                )
            action = _string(rule, "action", rule_node, source, required=True)
            if action not in ("allow", "deny", "bypass"):
                raise ApplyError(f"{_at(source, rule['action'])}: action must be allow, deny or bypass")
            spec.rules.append(
                {
                    "priority": _integer(priority),
                    "action": action,
                    "cidr": _string(rule, "cidr", rule_node, source),
                    "path": _string(rule, "path", rule_node, source),
                    "method": _string(rule, "method", rule_node, source),
                    "enabled": _bool(rule, "enabled", rule_node, source, True),
                    "line": _line(rule_node),
                }
            )
    return spec


def _http_settings(entry: dict, node, source: str) -> dict:
    settings: dict = {}
    if "lb_method" in entry:
        method = _string(entry, "lb_method", node, source)
        if method not in LB_METHODS:
            raise ApplyError(
                f"{_at(source, entry['lb_method'])}: lb_method must be {' or '.join(LB_METHODS)}"
            )
        settings["lb_method"] = method
    for key in ("sticky", "redirect_https", "public"):
        if key in entry:
            settings[key] = _bool(entry, key, node, source, False)
    if "hsts_max_age" in entry:
        settings["hsts_max_age"] = _whole(entry, "hsts_max_age", source, 0, MAX_HSTS_MAX_AGE)
    return settings


def _target_settings(entry: dict, node, scheme: str, source: str) -> dict:
    """A target's settings that the file states, checked as far as the file alone allows."""
    settings: dict = {}
    if "weight" in entry:
        settings["weight"] = _whole(entry, "weight", source, 0, MAX_WEIGHT)
    for key in ("tls_verify", "tls_server_name"):
        if key in entry and scheme != "https":
            raise ApplyError(f"{_at(source, entry[key])}: {key} is for https targets")
    if "tls_verify" in entry:
        settings["tls_verify"] = _bool(entry, "tls_verify", node, source, True)
    if "tls_server_name" in entry:
        value = _scalar(entry, "tls_server_name", source)
        if value is not None and value.tag == "tag:yaml.org,2002:null":
            settings["tls_server_name"] = None  # null: the target's host
        else:
            name = _string(entry, "tls_server_name", node, source) or ""
            settings["tls_server_name"] = name.strip().rstrip(".").lower()  # as the gateway keeps it
    if "health_check" in entry:
        check_node = entry["health_check"]
        check = _mapping(check_node, source, _HEALTH_CHECK_KEYS)
        wanted: dict = {}
        if scheme not in ("http", "https"):
            for key in ("path", "expected_status"):
                if key in check:
                    raise ApplyError(f"{_at(source, check[key])}: health_check.{key} is for http targets")
        if "enabled" in check:
            wanted["enabled"] = _bool(check, "enabled", check_node, source, False)
        if "path" in check:
            wanted["path"] = _string(check, "path", check_node, source)
        for key, (low, high) in _HEALTH_CHECK_INTEGERS.items():
            if key in check:
                wanted[key] = _whole(check, key, source, low, high)
        if "expected_status" in check:
            status = _scalar(check, "expected_status", source)
            if status is None or status.tag not in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:int"):
                raise ApplyError(
                    f"{_at(source, check['expected_status'])}: expected_status is codes and ranges, "
                    'such as "200-399" or "200,204"'
                )
            wanted["expected_status"] = ",".join(item.strip() for item in status.value.split(","))
        settings["health_check"] = wanted
    return settings


def _whole(entry: dict, key: str, source: str, low: int, high: int) -> int:
    node = _scalar(entry, key, source)
    number = None if node is None else _integer(node)
    if number is None or not low <= number <= high:
        raise ApplyError(f"{_at(source, entry[key])}: {key} must be a whole number from {low} to {high}")
    return number


def _target(address: str, kind: str, site: str, node, source: str) -> TargetSpec:
    if kind == "tcp":
        try:
            host, port = parse_host_port(address, "target")
        except ConfigError as e:
            raise ApplyError(f"{_at(source, node)}: {e}") from None
        return TargetSpec(site, host, port, "tcp", _line(node))
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApplyError(f"{_at(source, node)}: an http target is http(s)://HOST:PORT, not {address!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ApplyError(f"{_at(source, node)}: bad port in {address!r}") from None
    return TargetSpec(site, parts.hostname, port, parts.scheme, _line(node))


def _line(node) -> int:
    return node.start_mark.line + 1


def _at(source: str, node) -> str:
    return f"{source}:{_line(node)}"


def _mapping(node, source: str, allowed: set[str]) -> dict:
    if not isinstance(node, yaml.MappingNode):
        raise ApplyError(f"{_at(source, node)}: expected a mapping (key: value)")
    entries = {}
    for key, value in node.value:
        name = key.value
        if name not in allowed:
            raise ApplyError(
                f"{_at(source, key)}: unknown key {name!r}; known keys: {', '.join(sorted(allowed))}"
            )
        entries[name] = value
    return entries


def _sequence(node, source: str, what: str) -> list:
    if node is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise ApplyError(f"{_at(source, node)}: {what} must be a list")
    return node.value


def _scalar(entry: dict, key: str, source: str):
    node = entry.get(key)
    if node is None:
        return None
    if not isinstance(node, yaml.ScalarNode):
        raise ApplyError(f"{_at(source, node)}: {key} must be a single value")
    return node


def _string(entry: dict, key: str, parent, source: str, required: bool = False) -> str | None:
    node = _scalar(entry, key, source)
    if node is None:
        if required:
            raise ApplyError(f"{_at(source, parent)}: {key} is required")
        return None
    if node.tag != "tag:yaml.org,2002:str" or not node.value.strip():
        raise ApplyError(f"{_at(source, node)}: {key} must be a non-empty text")
    return node.value


def _bool(entry: dict, key: str, parent, source: str, default: bool) -> bool:
    node = _scalar(entry, key, source)
    if node is None:
        return default
    if node.tag != "tag:yaml.org,2002:bool":
        raise ApplyError(f"{_at(source, node)}: {key} must be true or false")
    return node.value.lower() in ("true", "yes", "on")


def _port(entry: dict, key: str, parent, source: str) -> int:
    node = _scalar(entry, key, source)
    if node is None:
        raise ApplyError(f"{_at(source, parent)}: {key} is required for tcp resources")
    number = _integer(node)
    if number is None or not 1 <= number <= 65535:
        raise ApplyError(f"{_at(source, node)}: {key} must be a whole number from 1 to 65535")
    return number


def _integer(node) -> int | None:
    """A plain decimal integer (YAML 1.1's octal, leading-zero and base-60 forms are refused)."""
    digits = node.value.lstrip("+-")
    if node.tag != "tag:yaml.org,2002:int" or not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        return None
    return int(node.value)


# ----------------------------------------------------------------------------- planning


@dataclass
class Step:
    """One change: what it says, and the API call that makes it."""

    text: str
    method: str
    path: str
    body: dict | None = None


def plan(api: Api, org: dict, desired: Desired, prune: bool) -> list[Step]:
    base = f"/orgs/{org['id']}"
    sites = {s["name"]: s for s in api.all(f"{base}/sites")}
    steps: list[Step] = []
    for name, (enabled, _) in desired.sites.items():
        site = sites.get(name)
        if site is None:
            steps.append(Step(f"+ site {name}", "POST", f"{base}/sites", {"name": name, "enabled": enabled}))
        elif site["enabled"] != enabled:
            steps.append(
                Step(
                    f"~ site {name}: enabled {enabled}",
                    "PATCH",
                    f"{base}/sites/{site['id']}",
                    {"enabled": enabled},
                )
            )
    resources = {r["name"]: r for r in api.all(f"{base}/resources")}
    who = _Principals(api, base)
    for spec in desired.resources:
        steps += _resource_steps(api, base, spec, resources.get(spec.name), sites, prune)
        steps += _access_steps(api, base, spec, resources.get(spec.name), who)
    if prune:
        for name, resource in resources.items():
            if name not in {r.name for r in desired.resources}:
                steps.append(Step(f"- resource {name}", "DELETE", f"{base}/resources/{resource['id']}"))
    return steps


def _fields(spec: ResourceSpec) -> dict:
    if spec.kind == "tcp":
        return {"public_port": spec.port, "enabled": spec.enabled}
    return {"hostname": spec.host, "path_prefix": spec.path, "enabled": spec.enabled, **spec.settings}


def _resource_steps(api: Api, base: str, spec: ResourceSpec, current, sites: dict, prune: bool) -> list[Step]:
    fields = _fields(spec)
    if current is None:
        body = {"name": spec.name, "kind": spec.kind, **fields}
        steps = [Step(f"+ resource {spec.name} ({_describe(spec)})", "POST", f"{base}/resources", body)]
        steps += [
            Step(
                f"+ target {t.site} {t.host}:{t.port} of {spec.name}",
                "POST",
                f"{base}/resources/{{resource:{spec.name}}}/targets",
                _target_body(t, sites),
            )
            for t in spec.targets
        ]
        return steps
    if current["kind"] != spec.kind:
        raise ApplyError(
            f"resource {spec.name!r} is {current['kind']} on the gateway and {spec.kind} in the file: "
            "a resource's kind cannot change (rename one of them)"
        )
    steps = []
    changed = {k: v for k, v in fields.items() if current.get(k) != v}
    if changed:
        what = ", ".join(f"{k} {current.get(k)!r} -> {v!r}" for k, v in changed.items())
        steps.append(
            Step(f"~ resource {spec.name}: {what}", "PATCH", f"{base}/resources/{current['id']}", changed)
        )
    path = f"{base}/resources/{current['id']}/targets"
    existing = api.all(path)
    site_names = {s["id"]: name for name, s in sites.items()}
    have = {(site_names.get(t["site_id"]), t["host"], t["port"], t["scheme"]): t for t in existing}
    want = {(t.site, t.host, t.port, t.scheme): t for t in spec.targets}
    for key, t in want.items():
        if key not in have:
            steps.append(
                Step(
                    f"+ target {t.site} {t.host}:{t.port} of {spec.name}",
                    "POST",
                    path,
                    _target_body(t, sites),
                )
            )
            continue
        changed, what = _target_changes(have[key], t.settings)
        if changed:
            steps.append(
                Step(
                    f"~ target {t.site} {t.host}:{t.port} of {spec.name}: {', '.join(what)}",
                    "PATCH",
                    f"{path}/{have[key]['id']}",
                    changed,
                )
            )
    if prune:
        for key, t in have.items():
            if key not in want:
                steps.append(
                    Step(
                        f"- target {key[0]} {t['host']}:{t['port']} of {spec.name}",
                        "DELETE",
                        f"{path}/{t['id']}",
                    )
                )
    return steps


class _Principals:
    """Roles by name and users by email or id, looked up once, when first needed."""

    def __init__(self, api: Api, base: str) -> None:
        self.api = api
        self.base = base
        self._roles: dict[str, str] | None = None
        self._users: dict[str, str] | None = None

    def resolve(self, kind: str, name: str, line: int) -> tuple[str, str]:
        if kind == "role":
            if self._roles is None:
                self._roles = {r["name"].lower(): r["id"] for r in self.api.all(f"{self.base}/roles")}
            role_id = self._roles.get(name.lower())
            if role_id is None:
                raise ApplyError(f"line {line}: no role {name!r} in this organization")
            return "role_id", role_id
        if name.startswith("user_"):
            return "user_id", name
        if self._users is None:
            self._users = {u["email"].lower(): u["id"] for u in self.api.all("/users")}
        user_id = self._users.get(name.lower())
        if user_id is None:
            raise ApplyError(f"line {line}: no user {name!r}")
        return "user_id", user_id


_RULE_FIELDS = ("priority", "action", "cidr", "path", "method", "enabled")


def _access_steps(api: Api, base: str, spec: ResourceSpec, current, who: _Principals) -> list[Step]:
    """Make the resource's grants and rules exactly those of the file (when it lists them)."""
    path = f"{base}/resources/{current['id'] if current else '{resource:' + spec.name + '}'}"
    steps: list[Step] = []
    if spec.grants is not None:
        want = {who.resolve(kind, name, line): name for kind, name, line in spec.grants}
        have = {}
        if current is not None:
            for g in api.all(f"{path}/grants"):
                key = ("role_id", g["role_id"]) if g["role_id"] else ("user_id", g["user_id"])
                have[key] = g["id"]
        for key, name in want.items():
            if key not in have:
                steps.append(
                    Step(f"+ grant {name} on {spec.name}", "POST", f"{path}/grants", {key[0]: key[1]})
                )
        for key, grant_id in have.items():
            if key not in want:
                steps.append(Step(f"- grant {key[1]} on {spec.name}", "DELETE", f"{path}/grants/{grant_id}"))
    if spec.rules is not None:  # rules are matched by priority (unique within a resource)
        want_rules = {r["priority"]: r for r in spec.rules}
        have_rules = {r["priority"]: r for r in api.all(f"{path}/rules")} if current is not None else {}
        for priority, rule in sorted(want_rules.items()):
            body = {f: rule[f] for f in _RULE_FIELDS}
            existing = have_rules.get(priority)
            if existing is None:
                create = {f: v for f, v in body.items() if v is not None}
                steps.append(
                    Step(f"+ rule {_rule_text(rule)} on {spec.name}", "POST", f"{path}/rules", create)
                )
            elif any(existing[f] != body[f] for f in _RULE_FIELDS):
                steps.append(
                    Step(
                        f"~ rule {_rule_text(existing)} -> {_rule_text(rule)} on {spec.name}",
                        "PATCH",
                        f"{path}/rules/{existing['id']}",
                        body,
                    )
                )
        for priority, existing in have_rules.items():
            if priority not in want_rules:
                steps.append(
                    Step(
                        f"- rule {_rule_text(existing)} on {spec.name}",
                        "DELETE",
                        f"{path}/rules/{existing['id']}",
                    )
                )
    return steps


def _rule_text(rule: dict) -> str:
    conditions = " ".join(f"{f}={rule[f]}" for f in ("cidr", "path", "method") if rule.get(f))
    return f"{rule['priority']} {rule['action']}" + (f" {conditions}" if conditions else "")


def _target_changes(current: dict, settings: dict) -> tuple[dict, list[str]]:
    """The PATCH body that gives an existing target the settings the file states, and what it says."""
    changed: dict = {}
    what: list[str] = []
    for key, value in settings.items():
        if key == "health_check":
            have = current.get("health_check") or {}
            check = {k: v for k, v in value.items() if have.get(k) != v}
            if check:  # the API keeps the health-check settings a PATCH leaves out
                changed["health_check"] = check
                what += [f"health_check.{k} {have.get(k)!r} -> {v!r}" for k, v in check.items()]
        elif current.get(key) != value:
            changed[key] = value
            what.append(f"{key} {current.get(key)!r} -> {value!r}")
    return changed, what


def _target_body(t: TargetSpec, sites: dict) -> dict:
    site = sites.get(t.site)
    return {
        "site_id": site["id"] if site else f"{{site:{t.site}}}",
        "host": t.host,
        "port": t.port,
        "scheme": t.scheme,
        **t.settings,
    }


def _describe(spec: ResourceSpec) -> str:
    return f"tcp:{spec.port}" if spec.kind == "tcp" else f"http://{spec.host}{spec.path}"


# ----------------------------------------------------------------------------- applying


def execute(api: Api, steps: list[Step]) -> None:
    """Make the changes in order; ids of what a step creates fill the later steps' paths."""
    made: dict[str, str] = {}  # "site:NAME" / "resource:NAME" -> the id it got
    for step in steps:
        path = step.path
        body = dict(step.body) if step.body else None
        for placeholder, object_id in made.items():
            path = path.replace(f"{{{placeholder}}}", object_id)
            if body and body.get("site_id") == f"{{{placeholder}}}":
                body["site_id"] = object_id
        result = api.call(step.method, path, body)
        if step.text.startswith("+ site "):
            made[f"site:{step.body['name']}"] = result["site"]["id"]
            print(f"{step.text}: id {result['site']['id']}, secret (shown once) {result['secret']}")
            continue
        if step.text.startswith("+ resource "):
            made[f"resource:{step.body['name']}"] = result["id"]
        print(step.text)


def run(args: argparse.Namespace) -> int:
    try:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ApplyError(f"cannot read {args.file}: {e.strerror}") from None
    desired = parse(text, args.file)
    api = api_for(args)
    org = organization(api, args.org)
    steps = plan(api, org, desired, args.prune)
    if not steps:
        print(f"{args.file}: nothing to change in organization {org['name']!r}")
        return 0
    if args.dry_run:
        print(f"{args.file}: {len(steps)} change(s) to organization {org['name']!r} (dry run, nothing done):")
        for step in steps:
            print(f"  {step.text}")
        return 0
    execute(api, steps)
    return 0
