"""The one table of routes: the Klein app is built from it, and so is the OpenAPI document.

Paths are relative to ``/api/v1``; ``{name}`` marks a path parameter. Who may call a route follows
from its method (GET needs the ``read`` scope, anything else ``write``), from the ``{org}`` in its path
(an organization's key only in its own), and from ``instance_only``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kokoa.store import ACCESS_KINDS, ACCESS_OUTCOMES, RESOURCE_KINDS

from . import _ops_access as access
from . import _ops_config as config
from . import _ops_console as console
from . import _ops_identity as identity
from ._call import Call, Reply
from ._schemas import CURSOR, DATETIME, LIMIT, string
from ._sse import Stream

Handler = Callable[[Call], Awaitable[Reply | Stream]]

PAGE: Mapping[str, Any] = {"limit": LIMIT, "cursor": CURSOR}
KIND: Mapping[str, Any] = {"type": "string", "enum": list(RESOURCE_KINDS)}
AUDIT_QUERY: Mapping[str, Any] = {
    "actor": string(200, description="such as key:kk_abcd1234"),
    "action": string(100, description="such as site.create, or site.* for every site action"),
    "object_kind": string(32),
    "object_id": string(100),
    "since": {**DATETIME, "description": "entries at or after this time"},
    "until": {**DATETIME, "description": "entries before this time"},
    **PAGE,
}
ACCESS_QUERY: Mapping[str, Any] = {
    "resource_id": string(40),
    "user_id": string(40),
    "subject": string(254, description="an email address, or a share link's name"),
    "kind": {"type": "string", "enum": list(ACCESS_KINDS)},
    "outcome": {"type": "string", "enum": list(ACCESS_OUTCOMES)},
    "client_address": string(64),
    "since": {**DATETIME, "description": "rows at or after this time"},
    "until": {**DATETIME, "description": "rows before this time"},
    **PAGE,
}

STATS_QUERY: Mapping[str, Any] = {
    "since": {**DATETIME, "description": "from this time (default: an hour before until)"},
    "until": {**DATETIME, "description": "to this time, excluded (default: now)"},
    "bucket": {
        "type": "integer",
        "minimum": 60,
        "maximum": 86400,
        "description": "seconds per point (default 300); at most 500 points from since to until",
    },
}


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler | None  # None: served by the app itself (the OpenAPI document)
    summary: str
    tag: str
    status: int = 200
    response: str | None = None  # the schema of a successful response's body (None: no body)
    body: str | None = None  # the schema of the request body
    body_required: bool = True
    query: Mapping[str, Any] = field(default_factory=dict)
    #: Body fields naming other objects: an unknown one there is a 422 naming the field, not a 404.
    references: tuple[str, ...] = ()
    instance_only: bool = False
    auth: bool = True
    #: Console users whose role in the organization is not Owner or Admin (Members) may call it too.
    members: bool = False
    #: It answers with Server-Sent Events (text/event-stream) until the client goes (see ._sse).
    stream: bool = False

    @property
    def operation_id(self) -> str:
        return "".join(w if i == 0 else w.title() for i, w in enumerate(self.name.split("_")))

    @property
    def name(self) -> str:
        return self.handler.__name__ if self.handler is not None else "get_openapi"

    @property
    def parameters(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def werkzeug_path(self) -> str:
        return "/api/v1" + re.sub(r"{(\w+)}", r"<\1>", self.path)


ORG = "/orgs/{org}"
RES = ORG + "/resources/{resource}"
LINK = RES + "/share-links/{link}"
SESSIONS = ORG + "/users/{user}/sessions"

# fmt: off
ROUTES: tuple[Route, ...] = (
    Route("GET", "/openapi.json", None, "This OpenAPI document", "meta", auth=False),
    Route("GET", "/status", identity.get_status, "The gateway's live status", "meta",
          response="Status", instance_only=True),
    # the console
    Route("GET", "/me", console.get_me, "Who is calling: a console user and their orgs, or an API key",
          "console", response="Me", members=True),
    Route("GET", "/me/resources", console.list_my_resources,
          "The resources the caller may open (the launcher), over all their organizations", "console",
          response="LauncherPage", members=True),
    # organizations
    Route("GET", "/orgs", identity.list_orgs, "List organizations (an organization's key: its own)",
          "organizations", response="OrganizationPage", query=PAGE, members=True),
    Route("POST", "/orgs", identity.create_org, "Create an organization", "organizations",
          status=201, response="Organization", body="OrganizationCreate", instance_only=True),
    Route("GET", ORG, identity.get_org, "Get an organization", "organizations",
          response="Organization", members=True),
    Route("PATCH", ORG, identity.update_org, "Rename an organization", "organizations",
          response="Organization", body="OrganizationUpdate"),
    Route("DELETE", ORG, identity.delete_org, "Delete an organization and everything it owns",
          "organizations", status=204, instance_only=True),
    # roles
    Route("GET", ORG + "/roles", identity.list_roles, "List roles", "roles",
          response="RolePage", query=PAGE),
    Route("POST", ORG + "/roles", identity.create_role, "Create a role", "roles",
          status=201, response="Role", body="RoleCreate"),
    Route("GET", ORG + "/roles/{role}", identity.get_role, "Get a role", "roles",
          response="Role"),
    Route("PATCH", ORG + "/roles/{role}", identity.update_role, "Change a role", "roles",
          response="Role", body="RoleUpdate"),
    Route("DELETE", ORG + "/roles/{role}", identity.delete_role, "Delete a custom role", "roles",
          status=204),
    # members
    Route("GET", ORG + "/members", identity.list_members, "List members", "members",
          response="MembershipPage", query=PAGE),
    Route("POST", ORG + "/members", identity.add_member, "Add a user to the organization", "members",
          status=201, response="Membership", body="MembershipCreate", references=("user_id", "role_id")),
    Route("GET", ORG + "/members/{user}", identity.get_member, "Get a membership", "members",
          response="Membership"),
    Route("PATCH", ORG + "/members/{user}", identity.update_member, "Change a member's role", "members",
          response="Membership", body="MembershipUpdate", references=("role_id",)),
    Route("DELETE", ORG + "/members/{user}", identity.remove_member, "Remove a member", "members",
          status=204),
    # users
    Route("GET", "/users", identity.list_users, "List users", "users",
          response="UserPage", query=PAGE, instance_only=True),
    Route("POST", "/users", identity.create_user, "Create a user", "users",
          status=201, response="User", body="UserCreate", instance_only=True),
    Route("GET", "/users/{user}", identity.get_user, "Get a user", "users",
          response="User", instance_only=True),
    Route("PATCH", "/users/{user}", identity.update_user, "Change a user", "users",
          response="User", body="UserUpdate", instance_only=True),
    Route("DELETE", "/users/{user}", identity.delete_user, "Delete a user", "users",
          status=204, instance_only=True),
    # sites
    Route("GET", ORG + "/sites", config.list_sites, "List sites", "sites",
          response="SitePage", query=PAGE),
    Route("POST", ORG + "/sites", config.create_site, "Create a site (its secret shown once)", "sites",
          status=201, response="SiteWithSecret", body="SiteCreate"),
    Route("GET", ORG + "/sites/{site}", config.get_site, "Get a site", "sites",
          response="Site"),
    Route("PATCH", ORG + "/sites/{site}", config.update_site, "Change a site", "sites",
          response="Site", body="SiteUpdate"),
    Route("DELETE", ORG + "/sites/{site}", config.delete_site, "Delete a site and its targets", "sites",
          status=204),
    Route("POST", ORG + "/sites/{site}/rotate-secret", config.rotate_site_secret,
          "Give a site a new secret (shown this once)", "sites",
          status=201, response="SiteWithSecret", body="SecretRotation", body_required=False),
    # resources
    Route("GET", ORG + "/resources", config.list_resources, "List resources", "resources",
          response="ResourcePage", query={"kind": KIND, **PAGE}),
    Route("POST", ORG + "/resources", config.create_resource, "Create a resource", "resources",
          status=201, response="Resource", body="ResourceCreate"),
    Route("GET", RES, config.get_resource, "Get a resource", "resources",
          response="Resource"),
    Route("PATCH", RES, config.update_resource, "Change a resource", "resources",
          response="Resource", body="ResourceUpdate"),
    Route("DELETE", RES, config.delete_resource, "Delete a resource with its targets, grants and rules",
          "resources", status=204),
    # targets
    Route("GET", RES + "/targets", config.list_targets, "List a resource's targets", "targets",
          response="TargetPage", query=PAGE),
    Route("POST", RES + "/targets", config.create_target, "Create a target", "targets",
          status=201, response="Target", body="TargetCreate", references=("site_id",)),
    Route("GET", RES + "/targets/{target}", config.get_target, "Get a target", "targets",
          response="Target"),
    Route("PATCH", RES + "/targets/{target}", config.update_target, "Change a target", "targets",
          response="Target", body="TargetUpdate", references=("site_id",)),
    Route("DELETE", RES + "/targets/{target}", config.delete_target, "Delete a target", "targets",
          status=204),
    # grants
    Route("GET", RES + "/grants", config.list_grants, "List who may reach a resource", "access",
          response="GrantPage", query=PAGE),
    Route("POST", RES + "/grants", config.create_grant, "Give a role or a member access", "access",
          status=201, response="Grant", body="GrantCreate", references=("role_id", "user_id")),
    Route("GET", RES + "/grants/{grant}", config.get_grant, "Get a grant", "access",
          response="Grant"),
    Route("DELETE", RES + "/grants/{grant}", config.delete_grant, "Take access away", "access",
          status=204),
    # rules
    Route("GET", RES + "/rules", config.list_rules, "List a resource's rules in order", "access",
          response="RulePage", query=PAGE),
    Route("POST", RES + "/rules", config.create_rule, "Create a rule", "access",
          status=201, response="Rule", body="RuleCreate"),
    Route("GET", RES + "/rules/{rule}", config.get_rule, "Get a rule", "access",
          response="Rule"),
    Route("PATCH", RES + "/rules/{rule}", config.update_rule, "Change a rule", "access",
          response="Rule", body="RuleUpdate"),
    Route("DELETE", RES + "/rules/{rule}", config.delete_rule, "Delete a rule", "access",
          status=204),
    Route("GET", RES + "/inspect", console.inspect_resource,
          "The requests going through an HTTP resource now (Server-Sent Events: request)", "console",
          stream=True),
    Route("POST", RES + "/rules/test", console.test_rules,
          "Which rule decides a request (method, path, client address), by the gateway's policy engine",
          "access", response="RuleTestResult", body="RuleTest"),
    # share links
    Route("GET", RES + "/share-links", access.list_share_links, "List a resource's share links",
          "share-links", response="ShareLinkPage", query=PAGE),
    Route("POST", RES + "/share-links", access.create_share_link,
          "Create a share link (its token shown once)", "share-links",
          status=201, response="ShareLinkWithToken", body="ShareLinkCreate"),
    Route("GET", LINK, access.get_share_link, "Get a share link", "share-links",
          response="ShareLink"),
    Route("DELETE", LINK, access.delete_share_link, "Delete a share link", "share-links",
          status=204),
    Route("POST", LINK + "/revoke", access.revoke_share_link,
          "Make a share link unusable (kept for the record)", "share-links", response="ShareLink"),
    # members' sessions and password-reset links
    Route("GET", SESSIONS, access.list_user_sessions, "List a member's active sessions", "sessions",
          response="SessionPage", query=PAGE),
    Route("POST", SESSIONS + "/revoke", access.revoke_user_sessions, "End every session of a member",
          "sessions", response="SessionRevocation"),
    Route("DELETE", SESSIONS + "/{session}", access.revoke_user_session, "End a member's session",
          "sessions", status=204),
    Route("POST", ORG + "/invitations", access.create_invitation,
          "Invite someone by email: an invited member, and a one-time link to set a password (7 days)",
          "members", status=201, response="Invitation", body="InvitationCreate", references=("role_id",)),
    Route("POST", ORG + "/users/{user}/password-reset", access.create_password_reset,
          "Make a one-time link to set a new password (valid for an hour; shown once)", "sessions",
          response="PasswordResetLink"),
    # API keys
    Route("GET", ORG + "/api-keys", identity.list_api_keys, "List the organization's API keys", "api-keys",
          response="ApiKeyPage", query=PAGE),
    Route("POST", ORG + "/api-keys", identity.create_api_key, "Create an API key (shown once)", "api-keys",
          status=201, response="ApiKeyWithKey", body="ApiKeyCreate"),
    Route("GET", ORG + "/api-keys/{key}", identity.get_api_key, "Get an API key", "api-keys",
          response="ApiKey"),
    Route("DELETE", ORG + "/api-keys/{key}", identity.delete_api_key, "Delete an API key", "api-keys",
          status=204),
    # the console: the organization's live picture
    Route("GET", ORG + "/overview", console.get_overview,
          "The organization's sites and tunnels, resources and targets' health, last hour, sign-ins",
          "console", response="Overview"),
    Route("GET", ORG + "/events", console.org_events,
          "The organization's live events (Server-Sent Events): overview, then site, health, changed, "
          "access", "console", stream=True),
    Route("GET", ORG + "/access-stats", console.access_stats,
          "Allowed and denied requests per resource over time (buckets summed from the access log)",
          "access-log", response="AccessStats", query=STATS_QUERY),
    # the audit log
    Route("GET", ORG + "/audit", identity.list_org_audit, "The organization's audit log", "audit",
          response="AuditEntryPage", query=AUDIT_QUERY),
    Route("GET", "/audit", identity.list_audit, "The whole audit log (instance keys)", "audit",
          response="AuditEntryPage", query={"org_id": string(40), **AUDIT_QUERY}, instance_only=True),
    # the access log
    Route("GET", ORG + "/access-log", access.list_org_access_log,
          "The organization's access log (decisions and sign-ins), newest first", "access-log",
          response="AccessEntryPage", query=ACCESS_QUERY),
    Route("GET", "/access-log", access.list_access_log, "The whole access log (instance keys)", "access-log",
          response="AccessEntryPage", query={"org_id": string(40), **ACCESS_QUERY}, instance_only=True),
)
# fmt: on
