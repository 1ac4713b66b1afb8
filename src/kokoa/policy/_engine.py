"""Who may make this request: the decision for one request to one resource, from memory.

See the package's docstring for the semantics; this module is pure code (no I/O, no reactor).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from kokoa.http._router import BadTarget, normalize_target

from ._rules import Address, PolicyError, Rule, fold_path, parse_address

if TYPE_CHECKING:
    from kokoa.http._router import Route

Outcome = Literal["allow", "deny", "authenticate"]

#: How strict an outcome is, to pick the stricter of two readings of one path.
_STRICTNESS = {"allow": 0, "authenticate": 1, "deny": 2}
#: Encoded slashes (and backslashes) that the router keeps inside a segment but that upstreams
#: such as nginx decode into separators (and then resolve "..").
_ENCODED_SLASH = re.compile("%(?:2F|5C)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is signed in: ``roles`` are role ids (what grants name), ``groups`` the names to tell the
    upstream (``Remote-Groups``). A visitor signed in by a resource's own password, PIN, email code or
    share link is no user: ``user_id`` names the credential, and ``resources`` the one resource it
    opens (as a grant would)."""

    user_id: str
    email: str
    roles: frozenset[str] = frozenset()
    groups: tuple[str, ...] = ()
    resources: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", frozenset(self.roles))
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "resources", frozenset(self.resources))


@dataclass(frozen=True, slots=True)
class Decision:
    """``allow`` (forward), ``deny`` (403) or ``authenticate`` (send the client to sign in), with a
    sentence for the audit log and the id of the rule that decided (None: the resource's default)."""

    outcome: Outcome
    reason: str
    rule_id: str | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome == "allow"


@dataclass(frozen=True, slots=True)
class ResourcePolicy:
    """Everything :func:`decide` needs about one resource. ``rules`` are sorted here (lowest
    priority first); priorities must be unique. ``error``, when set, says why the resource's
    configuration could not be read: every request is then denied (fail closed)."""

    resource_id: str
    rules: tuple[Rule, ...] = ()
    public: bool = False
    grants_roles: frozenset[str] = frozenset()
    grants_users: frozenset[str] = frozenset()
    error: str | None = None
    _needs_address: bool = field(default=False, init=False, repr=False, compare=False)
    # Whether a rule looks at the path (then the folded path is read too), and whether every such
    # rule's pattern is its own folded form (then a path that folds to itself needs one reading).
    _folds: bool = field(default=False, init=False, repr=False, compare=False)
    _folded_alike: bool = field(default=True, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rules = tuple(sorted(self.rules, key=lambda rule: rule.priority))
        seen: set[int] = set()
        for rule in rules:
            if rule.priority in seen:
                raise PolicyError(
                    f"resource {self.resource_id}: two rules have priority {rule.priority}"
                    " (the order would be ambiguous)"
                )
            seen.add(rule.priority)
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "public", bool(self.public))
        object.__setattr__(self, "grants_roles", frozenset(self.grants_roles))
        object.__setattr__(self, "grants_users", frozenset(self.grants_users))
        object.__setattr__(self, "_needs_address", any(rule.cidr is not None for rule in rules))
        with_paths = [rule for rule in rules if rule.path is not None and rule.path != "/"]
        object.__setattr__(self, "_folds", bool(with_paths))
        object.__setattr__(self, "_folded_alike", all(rule.folded == rule.path for rule in with_paths))


def decide(
    policy: ResourcePolicy,
    route_match_path: str | None,
    method: str | None,
    client_ip: Any,
    identity: Identity | None,
) -> Decision:
    """The decision for one request: ``route_match_path`` is the router's ``Target.match_path``
    (already normalized: nothing is parsed here), ``client_ip`` the client's address (text or an
    ipaddress object). ``None`` for the path or method (a TCP connection) means unknown: a rule that
    needs it, as a rule needing an address when the address is not one, denies (fail closed)."""
    if policy.error is not None:
        return Decision("deny", f"the access configuration of this resource is broken: {policy.error}")
    if not isinstance(route_match_path, str):
        route_match_path = None
    if not isinstance(method, str):
        method = None
    address = parse_address(client_ip) if policy._needs_address else None
    decision = _decide(policy, route_match_path, None, method, client_ip, address, identity)
    if route_match_path is None:
        return decision
    if policy._folds:
        # Upstreams that ignore case or trim trailing dots and spaces read "/ADMIN" and "/admin." as
        # "/admin": deny and allow rules are matched against the folded path too (bypass rules
        # match no more than they do exactly), and the stricter decision wins.
        decision = _folded_reading(policy, decision, route_match_path, method, client_ip, address, identity)
    if _ENCODED_SLASH.search(route_match_path):
        # The router keeps "%2F" inside a segment, but an upstream may decode it and resolve "..":
        # "/public/..%2Fadmin" reaches nginx's "/admin". Decide on that reading as well (and on its
        # folded form) and keep the stricter decision, so an encoded slash never gets around a rule.
        decoded = _decoded_slashes(route_match_path)
        if decoded is not None and decoded != route_match_path:
            other = _decide(policy, decoded, None, method, client_ip, address, identity)
            if policy._folds:
                other = _folded_reading(policy, other, decoded, method, client_ip, address, identity)
            if _STRICTNESS[other.outcome] > _STRICTNESS[decision.outcome]:
                return replace(
                    other, reason=f"{other.reason} (reading the encoded slashes in the path: {decoded})"
                )
    return decision


def _folded_reading(
    policy: ResourcePolicy,
    decision: Decision,
    path: str,
    method: str | None,
    client_ip: Any,
    address: Address | None,
    identity: Identity | None,
) -> Decision:
    """The stricter of ``decision`` (on ``path`` as it is) and the decision on its folded form."""
    folded = fold_path(path)
    if folded == path and policy._folded_alike:
        return decision  # the same reading
    other = _decide(policy, path, folded, method, client_ip, address, identity)
    if _STRICTNESS[other.outcome] > _STRICTNESS[decision.outcome]:
        return replace(
            other,
            reason=f"{other.reason} (reading the path without case and trailing dots or spaces: {folded})",
        )
    return decision


def _decoded_slashes(match_path: str) -> str | None:
    try:
        return normalize_target(_ENCODED_SLASH.sub("/", match_path).encode("ascii")).match_path
    except (BadTarget, UnicodeError):
        return None


def _decide(
    policy: ResourcePolicy,
    path: str | None,
    folded: str | None,
    method: str | None,
    client_ip: Any,
    address: Address | None,
    identity: Identity | None,
) -> Decision:
    """The first matching rule's decision, or the default. With ``folded`` (the folded form of
    ``path``), deny and allow rules are matched against it, and a bypass rule must match both."""
    for rule in policy.rules:
        unknown = None
        if rule.method is not None:
            if method is None:
                unknown = "the request's method"
            elif not rule.method_matches(method):
                continue
        if rule.path is not None and rule.path != "/":
            if path is None:
                unknown = "the request's path"
            elif folded is None:
                if not rule.path_matches(path):
                    continue
            elif rule.action == "bypass":
                if not (rule.path_matches(path) and rule.folded_path_matches(folded)):
                    continue
            elif not rule.folded_path_matches(folded):
                continue
        if rule.cidr is not None:
            if address is None:
                unknown = f"the client's address (got {client_ip!r:.64}, not an IP address)"
            elif not rule.address_matches(address):
                continue
        if unknown is not None:
            return Decision("deny", f"{rule.label} cannot be checked: {unknown} is unknown", rule.id)
        return _apply(policy, rule, identity)
    return _default(policy, identity)


def _apply(policy: ResourcePolicy, rule: Rule, identity: Identity | None) -> Decision:
    if rule.action == "deny":
        return Decision("deny", f"denied by {rule.label}", rule.id)
    if rule.action == "bypass":
        return Decision("allow", f"{rule.label} lets the request through without authentication", rule.id)
    # "allow": the resource's authentication and grants apply, whatever its default.
    if identity is None:
        return Decision("authenticate", f"{rule.label} requires signing in", rule.id)
    granted = _grant(policy, identity)
    if granted is None:
        return Decision("deny", f"{rule.label} requires a grant: {_no_grant(identity)}", rule.id)
    return Decision("allow", f"{rule.label} matches and {_who(identity)} {granted}", rule.id)


def _default(policy: ResourcePolicy, identity: Identity | None) -> Decision:
    if policy.public:
        return Decision("allow", "no rule matches and the resource is public")
    if identity is None:
        return Decision(
            "authenticate", "no rule matches and the resource is not public: signing in is required"
        )
    granted = _grant(policy, identity)
    if granted is None:
        return Decision("deny", f"no rule matches and {_no_grant(identity)}")
    return Decision("allow", f"no rule matches and {_who(identity)} {granted}")


def _grant(policy: ResourcePolicy, identity: Identity) -> str | None:
    """How the identity holds a grant to the resource (a phrase), or None."""
    if policy.resource_id in identity.resources:
        return "signed in to this resource with its own credential"
    if identity.user_id in policy.grants_users:
        return "has a grant to this resource"
    roles = sorted(identity.roles & policy.grants_roles)
    if roles:
        return f"holds role {roles[0]}, which has a grant to this resource"
    return None


def _who(identity: Identity) -> str:
    return f"user {identity.email} ({identity.user_id})"


def _no_grant(identity: Identity) -> str:
    roles = ", ".join(sorted(identity.roles)) or "none"
    return (
        f"{_who(identity)} has no grant to this resource: neither the user nor any of its roles"
        f" ({roles}) is granted access"
    )


# -- the policies of every resource ---------------------------------------------------------------------


def _get(row: Any, name: str, default: Any = None) -> Any:
    if isinstance(row, Mapping):
        return row.get(name, default)
    return getattr(row, name, default)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The policies of every resource at one configuration version, keyed by resource id. Build it
    once per version with :meth:`build`; asking it is a dictionary lookup and :func:`decide`.

    A resource with no rules and no grants has no entry: it gets the closed default (not public,
    nobody granted), so forgetting to load a resource never opens it."""

    policies: Mapping[str, ResourcePolicy] = field(default_factory=dict)
    version: int | None = None
    #: Sentences about rows that could not be read (their resources deny every request).
    errors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "policies", MappingProxyType(dict(self.policies)))
        object.__setattr__(self, "errors", tuple(self.errors))

    @classmethod
    def build(
        cls,
        rules: Iterable[Any] = (),
        grants: Iterable[Any] = (),
        public: Iterable[str] = (),
        *,
        version: int | None = None,
        resources: Iterable[str] = (),
    ) -> PolicySet:
        """From store rows: ``rules`` (:class:`kokoa.store.Rule` or dicts with ``id``,
        ``resource_id``, ``priority``, ``action``, ``cidr``, ``path``, ``method``, ``enabled``;
        disabled rules are left out), ``grants`` (:class:`kokoa.store.Grant` or dicts with
        ``resource_id`` and one of ``role_id``/``user_id``), the ids of ``public`` resources, and
        the ids of every other known ``resources`` (each gets an entry of its own).

        A row that cannot be read does not stop the others: its resource denies every request and
        :attr:`errors` says why."""
        per_rules: dict[str, list[Rule]] = {}
        roles: dict[str, set[str]] = {}
        users: dict[str, set[str]] = {}
        broken: dict[str, str] = {}
        for row in rules:
            resource_id = _get(row, "resource_id")
            if not isinstance(resource_id, str):
                raise PolicyError(f"rule row {row!r} has no resource_id")
            if not _get(row, "enabled", True):
                continue
            try:
                rule = Rule(
                    _get(row, "id"),
                    _get(row, "priority"),
                    _get(row, "action"),
                    cidr=_get(row, "cidr"),
                    path=_get(row, "path"),
                    method=_get(row, "method"),
                )
            except PolicyError as e:
                broken.setdefault(resource_id, str(e))
                continue
            per_rules.setdefault(resource_id, []).append(rule)
        for row in grants:
            resource_id, role_id, user_id = (_get(row, k) for k in ("resource_id", "role_id", "user_id"))
            if not isinstance(resource_id, str):
                raise PolicyError(f"grant row {row!r} has no resource_id")
            if isinstance(role_id, str) and user_id is None:
                roles.setdefault(resource_id, set()).add(role_id)
            elif isinstance(user_id, str) and role_id is None:
                users.setdefault(resource_id, set()).add(user_id)
            else:
                broken.setdefault(resource_id, f"grant {_get(row, 'id')!r} names no role or user, or both")
        public_ids = {public} if isinstance(public, str) else set(public)
        policies: dict[str, ResourcePolicy] = {}
        errors: list[str] = []
        known = per_rules.keys() | roles.keys() | users.keys() | public_ids | broken.keys() | set(resources)
        for resource_id in sorted(known):
            error = broken.get(resource_id)
            try:
                policy = ResourcePolicy(
                    resource_id,
                    tuple(per_rules.get(resource_id, ())),
                    public=resource_id in public_ids,
                    grants_roles=frozenset(roles.get(resource_id, ())),
                    grants_users=frozenset(users.get(resource_id, ())),
                    error=error,
                )
            except PolicyError as e:
                error = str(e)
                policy = ResourcePolicy(resource_id, error=error)
            if error is not None:
                errors.append(f"resource {resource_id}: {error}")
            policies[resource_id] = policy
        return cls(policies, version, tuple(errors))

    def get(self, resource_id: str) -> ResourcePolicy:
        """The resource's policy (the closed default for a resource without rules or grants)."""
        policy = self.policies.get(resource_id)
        return policy if policy is not None else ResourcePolicy(resource_id)

    def decide(
        self,
        resource_id: str,
        route_match_path: str | None,
        method: str | None,
        client_ip: Any,
        identity: Identity | None,
    ) -> Decision:
        policy = self.policies.get(resource_id, _CLOSED)
        return decide(policy, route_match_path, method, client_ip, identity)

    def decide_route(
        self, route: Route, method: str | None, client_ip: Any, identity: Identity | None
    ) -> Decision:
        """The decision for a request the router routed: its resource and ``match_path``."""
        policy = self.policies.get(route.resource.id, _CLOSED)
        return decide(policy, route.target.match_path, method, client_ip, identity)


#: What a resource without rules or grants gets (see :meth:`PolicySet.get`).
_CLOSED = ResourcePolicy("")
