"""The JSON Schemas of every request and response body, published under ``components/schemas`` in the
OpenAPI document and used, the very same dicts, to check request bodies (see :mod:`._jsonschema`).

Request schemas refuse unknown fields (``additionalProperties: false``) and check types, lengths and
ranges; the store checks the rest (hostnames, networks, paths, e-mail addresses) and its refusals
come back as the same kind of 422 problem. The limits mirror the store's (a test compares them).
"""

from __future__ import annotations

from typing import Any

from kokoa.store import (
    ACCESS_KINDS,
    ACCESS_OUTCOMES,
    LB_METHODS,
    MAX_HSTS_MAX_AGE,
    MAX_LIMIT,
    RESOURCE_KINDS,
    RULE_ACTIONS,
    SESSION_KINDS,
    USER_STATUSES,
)

NAME_LENGTH = 100
ID_LENGTH = 40
HOSTNAME_LENGTH = 253
PATH_LENGTH = 1024
EMAIL_LENGTH = 254
DESCRIPTION_LENGTH = 500
PASSWORD_MIN, PASSWORD_MAX = 8, 1024
MAX_PRIORITY = 1_000_000
MAX_WEIGHT = 1000
EXPECTED_STATUS_LENGTH = 64
#: The longest grace period a rotated-out site secret can be given (7 days).
MAX_GRACE_SECONDS = 7 * 24 * 3600
#: The most uses a share link can be given.
MAX_SHARE_LINK_USES = 1_000_000
#: The scopes an API key can be given here: "read" (GET only), "write" and "*" (everything).
API_KEY_SCOPES = ("read", "write", "*")

JSON = dict[str, Any]


def ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def string(max_length: int, min_length: int = 1, **extra: Any) -> JSON:
    return {"type": "string", "minLength": min_length, "maxLength": max_length, **extra}


def nullable(schema: JSON) -> JSON:
    return {**schema, "type": [schema["type"], "null"]}


def integer(low: int, high: int, **extra: Any) -> JSON:
    return {"type": "integer", "minimum": low, "maximum": high, **extra}


def obj(properties: dict[str, JSON], required: tuple[str, ...] = (), **extra: Any) -> JSON:
    schema: JSON = {"type": "object", "properties": properties, "additionalProperties": False, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def output(properties: dict[str, JSON], **extra: Any) -> JSON:
    """A response object: every property is always present."""
    return obj(properties, tuple(properties), **extra)


def page_schema(item: str) -> JSON:
    return output(
        {
            "items": {"type": "array", "items": ref(item)},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as ?cursor= for the next page; null on the last page.",
            },
        },
        description=f"One page of {item} objects, in creation order (the audit and access logs: newest "
        "first).",
    )


BOOLEAN: JSON = {"type": "boolean"}
ID: JSON = string(ID_LENGTH, description="An id given by the server, such as site_3kq9...")
NAME: JSON = string(NAME_LENGTH)
DATETIME: JSON = {"type": "string", "format": "date-time"}
PORT: JSON = integer(1, 65535)

_TIMESTAMPS: dict[str, JSON] = {"created_at": DATETIME, "updated_at": DATETIME}

_HEALTH_CHECK_FIELDS: dict[str, JSON] = {
    "enabled": BOOLEAN,
    "path": nullable(
        string(PATH_LENGTH, description="HTTP targets: the path to GET (an HTTP check); null: a TCP connect")
    ),
    "interval": integer(1, 3600, description="seconds between checks"),
    "timeout": integer(1, 300, description="seconds each check may take (at most the interval)"),
    "healthy_threshold": integer(1, 100),
    "unhealthy_threshold": integer(1, 100),
    "expected_status": string(
        EXPECTED_STATUS_LENGTH,
        description="HTTP checks: the statuses that pass, codes and ranges from 100 to 599 separated by "
        "commas, such as 200-399 (the default) or 200,204; TCP checks keep the default",
    ),
}

#: HTTP resources' settings; TCP and UDP resources always read the defaults and refuse other values.
_HTTP_SETTINGS: dict[str, JSON] = {
    "lb_method": {
        "type": "string",
        "enum": list(LB_METHODS),
        "description": "HTTP only: how requests are spread over the targets (default round_robin)",
    },
    "sticky": {
        **BOOLEAN,
        "description": "HTTP only: pin each client to a target with a cookie (default false)",
    },
    "redirect_https": {
        **BOOLEAN,
        "description": "HTTP only: answer plain-HTTP requests with a redirect to https (default false)",
    },
    "hsts_max_age": integer(
        0,
        MAX_HSTS_MAX_AGE,
        description="HTTP only: seconds of Strict-Transport-Security on HTTPS answers; "
        "0 (the default) sends none",
    ),
}

#: Who may reach a resource besides users with a grant (the write side; the password and PIN are
#: write-only: a resource reads back has_password and has_pin).
_EMAIL_ALLOW: JSON = {
    "type": "array",
    "maxItems": 100,
    "items": string(EMAIL_LENGTH),
    "description": "HTTP only: email addresses, and @domains, that may sign in with a one-time code "
    "sent by email (to this resource alone)",
}
_ACCESS_SETTINGS: dict[str, JSON] = {
    "public": {
        **BOOLEAN,
        "description": "Anyone may reach the resource without signing in (rules still apply). Default: "
        "false for HTTP resources, true for TCP and UDP ones",
    },
    "auth_email_allow": _EMAIL_ALLOW,
}
_AUTH_PASSWORD: JSON = string(
    PASSWORD_MAX,
    PASSWORD_MIN,
    writeOnly=True,
    description="HTTP only: a shared password that signs visitors in to this resource alone",
)
_AUTH_PIN: JSON = {
    "type": "string",
    "pattern": "^[0-9]{6,12}$",
    "writeOnly": True,
    "description": "HTTP only: a PIN (6 to 12 digits) that signs visitors in to this resource alone",
}

#: Targets' TLS settings (https targets only; other targets always read the defaults).
_TLS_VERIFY: JSON = {
    **BOOLEAN,
    "description": "https targets only: verify the target's certificate (default true)",
}
_TLS_SERVER_NAME: JSON = nullable(
    string(
        HOSTNAME_LENGTH,
        description="https targets only: the name sent as SNI and verified; null (the default): the host",
    )
)

SCHEMAS: dict[str, JSON] = {
    # -- problems ------------------------------------------------------------------------------------
    "FieldError": output({"field": {"type": ["string", "null"]}, "message": {"type": "string"}}),
    "Problem": obj(
        {
            "type": {"type": "string", "description": "about:blank, or a stable urn:kokoa:problem:* URI"},
            "title": {"type": "string"},
            "status": integer(100, 599),
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": ref("FieldError")},
        },
        ("type", "title", "status", "detail"),
        description="An RFC 9457 problem document (application/problem+json).",
    ),
    # -- organizations, roles, members, users ----------------------------------------------------
    "Organization": output({"id": ID, "name": NAME, **_TIMESTAMPS}),
    "OrganizationCreate": obj({"name": NAME}, ("name",)),
    "OrganizationUpdate": obj({"name": NAME}),
    "Role": output(
        {
            "id": ID,
            "org_id": ID,
            "name": NAME,
            "description": {"type": "string"},
            "builtin": BOOLEAN,
            **_TIMESTAMPS,
        }
    ),
    "RoleCreate": obj({"name": NAME, "description": string(DESCRIPTION_LENGTH, 0)}, ("name",)),
    "RoleUpdate": obj({"name": NAME, "description": string(DESCRIPTION_LENGTH, 0)}),
    "Membership": output({"org_id": ID, "user_id": ID, "role_id": ID, "role_name": NAME, **_TIMESTAMPS}),
    "MembershipCreate": obj({"user_id": ID, "role_id": ID}, ("user_id", "role_id")),
    "MembershipUpdate": obj({"role_id": ID}, ("role_id",)),
    "User": output(
        {
            "id": ID,
            "email": {"type": "string"},
            "display_name": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": list(USER_STATUSES)},
            "has_password": BOOLEAN,
            **_TIMESTAMPS,
        },
        description="A user; the password hash is never shown, only whether there is one.",
    ),
    "UserCreate": obj(
        {
            "email": string(EMAIL_LENGTH),
            "password": string(PASSWORD_MAX, PASSWORD_MIN, writeOnly=True),
            "display_name": nullable(NAME),
            "status": {"type": "string", "enum": list(USER_STATUSES)},
        },
        ("email",),
    ),
    "UserUpdate": obj(
        {
            "email": string(EMAIL_LENGTH),
            "password": nullable(
                string(PASSWORD_MAX, PASSWORD_MIN, writeOnly=True, description="null removes the password")
            ),
            "display_name": nullable(NAME),
            "status": {"type": "string", "enum": list(USER_STATUSES)},
        }
    ),
    # -- sites ---------------------------------------------------------------------------------------
    "Site": output(
        {
            "id": ID,
            "org_id": ID,
            "name": NAME,
            "enabled": BOOLEAN,
            "online": BOOLEAN,
            "last_seen_at": nullable(DATETIME),
            "previous_secret_expires_at": nullable(DATETIME),
            **_TIMESTAMPS,
        }
    ),
    "SiteWithSecret": output(
        {
            "site": ref("Site"),
            "secret": {"type": "string", "description": "The site's secret: shown this once, never again."},
        }
    ),
    "SiteCreate": obj({"name": NAME, "enabled": BOOLEAN}, ("name",)),
    "SiteUpdate": obj({"name": NAME, "enabled": BOOLEAN}),
    "SecretRotation": obj(
        {
            "grace_seconds": integer(
                0,
                MAX_GRACE_SECONDS,
                description="How long the previous secret stays valid (default 86400; 0 revokes it at once).",
            )
        }
    ),
    # -- resources and targets ---------------------------------------------------------------------
    "Resource": output(
        {
            "id": ID,
            "org_id": ID,
            "name": NAME,
            "kind": {"type": "string", "enum": list(RESOURCE_KINDS)},
            "hostname": {"type": ["string", "null"]},
            "path_prefix": {"type": ["string", "null"]},
            "public_port": {"type": ["integer", "null"]},
            "enabled": BOOLEAN,
            **_TIMESTAMPS,
            "lb_method": {"type": "string", "enum": list(LB_METHODS)},
            "sticky": BOOLEAN,
            "redirect_https": BOOLEAN,
            "hsts_max_age": integer(0, MAX_HSTS_MAX_AGE),
            "public": BOOLEAN,
            "has_password": BOOLEAN,
            "has_pin": BOOLEAN,
            "auth_email_allow": {"type": "array", "items": {"type": "string"}},
        }
    ),
    "ResourceCreate": obj(
        {
            "name": NAME,
            "kind": {"type": "string", "enum": list(RESOURCE_KINDS)},
            "hostname": string(HOSTNAME_LENGTH, description="HTTP only: a DNS name, or *.example.com"),
            "path_prefix": string(PATH_LENGTH, description="HTTP only (default /)"),
            "public_port": integer(1, 65535, description="TCP and UDP only"),
            "enabled": BOOLEAN,
            **_HTTP_SETTINGS,
            **_ACCESS_SETTINGS,
            "auth_password": _AUTH_PASSWORD,
            "auth_pin": _AUTH_PIN,
        },
        ("name", "kind"),
    ),
    "ResourceUpdate": obj(
        {
            "name": NAME,
            "hostname": string(HOSTNAME_LENGTH),
            "path_prefix": string(PATH_LENGTH),
            "public_port": PORT,
            "enabled": BOOLEAN,
            **_HTTP_SETTINGS,
            **_ACCESS_SETTINGS,
            "auth_password": nullable(_AUTH_PASSWORD),
            "auth_pin": nullable(_AUTH_PIN),
        },
        description="The kind of a resource is fixed: make a new resource instead. A null auth_password "
        "or auth_pin removes it.",
    ),
    "HealthCheck": output(_HEALTH_CHECK_FIELDS),
    "HealthCheckSettings": obj(_HEALTH_CHECK_FIELDS, description="Settings left out keep their value."),
    "Target": output(
        {
            "id": ID,
            "resource_id": ID,
            "site_id": ID,
            "host": {"type": "string"},
            "port": PORT,
            "scheme": {"type": "string", "enum": ["http", "https", "tcp", "udp"]},
            "weight": integer(0, MAX_WEIGHT),
            "enabled": BOOLEAN,
            "health_check": ref("HealthCheck"),
            **_TIMESTAMPS,
            "tls_verify": BOOLEAN,
            "tls_server_name": {"type": ["string", "null"]},
        }
    ),
    "TargetCreate": obj(
        {
            "site_id": ID,
            "host": string(HOSTNAME_LENGTH, description="An IP address or a hostname, seen from the site"),
            "port": PORT,
            "scheme": {"type": "string", "enum": ["http", "https", "tcp", "udp"]},
            "weight": integer(0, MAX_WEIGHT),
            "enabled": BOOLEAN,
            "health_check": ref("HealthCheckSettings"),
            "tls_verify": _TLS_VERIFY,
            "tls_server_name": _TLS_SERVER_NAME,
        },
        ("site_id", "host", "port"),
    ),
    "TargetUpdate": obj(
        {
            "site_id": ID,
            "host": string(HOSTNAME_LENGTH),
            "port": PORT,
            "scheme": {"type": "string", "enum": ["http", "https", "tcp", "udp"]},
            "weight": integer(0, MAX_WEIGHT),
            "enabled": BOOLEAN,
            "health_check": ref("HealthCheckSettings"),
            "tls_verify": _TLS_VERIFY,
            "tls_server_name": _TLS_SERVER_NAME,
        },
        description="Moving a target off https resets its TLS settings.",
    ),
    # -- access --------------------------------------------------------------------------------------
    "Grant": output(
        {
            "id": ID,
            "resource_id": ID,
            "role_id": {"type": ["string", "null"]},
            "user_id": {"type": ["string", "null"]},
            "created_at": DATETIME,
        }
    ),
    "GrantCreate": obj(
        {"role_id": ID, "user_id": ID},
        description="Give exactly one of role_id (a role of the organization) and user_id (a member).",
    ),
    "Rule": output(
        {
            "id": ID,
            "resource_id": ID,
            "priority": integer(0, MAX_PRIORITY),
            "action": {"type": "string", "enum": list(RULE_ACTIONS)},
            "cidr": {"type": ["string", "null"]},
            "path": {"type": ["string", "null"]},
            "method": {"type": ["string", "null"]},
            "enabled": BOOLEAN,
            **_TIMESTAMPS,
        }
    ),
    "RuleCreate": obj(
        {
            "priority": integer(0, MAX_PRIORITY, description="Rules are evaluated lowest first"),
            "action": {"type": "string", "enum": list(RULE_ACTIONS)},
            "cidr": nullable(string(64)),
            "path": nullable(string(PATH_LENGTH, description="'*' matches any run of characters")),
            "method": nullable(string(16)),
            "enabled": BOOLEAN,
        },
        ("priority", "action"),
    ),
    "RuleUpdate": obj(
        {
            "priority": integer(0, MAX_PRIORITY),
            "action": {"type": "string", "enum": list(RULE_ACTIONS)},
            "cidr": nullable(string(64)),
            "path": nullable(string(PATH_LENGTH)),
            "method": nullable(string(16)),
            "enabled": BOOLEAN,
        },
        description="null clears a condition.",
    ),
    # -- API keys and the audit log ----------------------------------------------------------------
    "ApiKey": output(
        {
            "id": ID,
            "org_id": {"type": ["string", "null"]},
            "name": NAME,
            "prefix": {"type": "string"},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "expires_at": nullable(DATETIME),
            "last_used_at": nullable(DATETIME),
            "revoked_at": nullable(DATETIME),
            "created_by": {"type": ["string", "null"]},
            **_TIMESTAMPS,
        },
        description="An API key as listed: its prefix, never the key.",
    ),
    "ApiKeyWithKey": output(
        {
            "api_key": ref("ApiKey"),
            "key": {"type": "string", "description": "The key (Bearer token): shown this once, never again."},
        }
    ),
    "ApiKeyCreate": obj(
        {
            "name": NAME,
            "scopes": {
                "type": "array",
                "items": {"type": "string", "enum": list(API_KEY_SCOPES)},
                "minItems": 1,
                "maxItems": 3,
                "description": "read: GET only; write or *: everything in the organization",
            },
            "expires_at": nullable(DATETIME),
            "user_id": {
                **ID,
                "description": "A member this key acts for on protected resources (Authorization: Bearer "
                "sends it there with the member's grants); without one the key reaches no resource",
            },
        },
        ("name", "scopes"),
    ),
    "AuditEntry": output(
        {
            "id": {"type": "integer"},
            "at": DATETIME,
            "org_id": {"type": ["string", "null"]},
            "actor": {"type": "string", "description": "who: key:<prefix>, user:<id>, system"},
            "action": {"type": "string", "description": "what, such as site.create"},
            "object_kind": {"type": ["string", "null"]},
            "object_id": {"type": ["string", "null"]},
            "before": {"description": "the object before the change (never a secret)"},
            "after": {"description": "the object after the change (never a secret)"},
            "source_address": {"type": ["string", "null"]},
        }
    ),
    # -- share links, sessions, password links and the access log ---------------------------------
    "ShareLink": output(
        {
            "id": ID,
            "resource_id": ID,
            "name": NAME,
            "prefix": {"type": "string"},
            "expires_at": nullable(DATETIME),
            "max_uses": {"type": ["integer", "null"], "description": "null: no limit"},
            "uses": {"type": "integer", "minimum": 0},
            "revoked_at": nullable(DATETIME),
            "created_by": {"type": ["string", "null"], "description": "who made it: key:<prefix>, user:<id>"},
            **_TIMESTAMPS,
        },
        description="A share link as listed: its prefix, never the token.",
    ),
    "ShareLinkWithToken": output(
        {
            "share_link": ref("ShareLink"),
            "token": {
                "type": "string",
                "description": "The link's token: shown this once, never again. Visitors open "
                "https://<the resource's hostname>/.kokoa/share/<token>",
            },
        }
    ),
    "ShareLinkCreate": obj(
        {
            "name": NAME,
            "expires_at": nullable(DATETIME),
            "max_uses": nullable(
                integer(1, MAX_SHARE_LINK_USES, description="How many times the link may be opened")
            ),
        },
        ("name",),
        description="A link that signs anyone holding it in to this HTTP resource alone; null expires_at "
        "and max_uses (the defaults): no limit.",
    ),
    "Session": output(
        {
            "id": ID,
            "kind": {"type": "string", "enum": list(SESSION_KINDS)},
            "user_id": {"type": ["string", "null"]},
            "parent_id": {"type": ["string", "null"], "description": "host sessions: their login session"},
            "resource_id": {"type": ["string", "null"]},
            "subject": {"type": ["string", "null"]},
            "method": {"type": "string", "description": "how they signed in: password, oidc:<provider>..."},
            "host": {"type": ["string", "null"]},
            "created_at": DATETIME,
            "last_seen_at": DATETIME,
            "expires_at": DATETIME,
            "revoked_at": nullable(DATETIME),
            "source_address": {"type": ["string", "null"]},
            "user_agent": {"type": ["string", "null"]},
        },
        description="A sign-in session (never its token).",
    ),
    "SessionRevocation": output(
        {"revoked": {"type": "integer", "minimum": 0, "description": "how many sessions were ended"}}
    ),
    "InvitationCreate": obj({"email": string(EMAIL_LENGTH), "role_id": ID}, ("email", "role_id")),
    "Invitation": output(
        {
            "user": ref("User"),
            "token": {"type": "string", "description": "The one-time token: shown this once, never again."},
            "expires_at": DATETIME,
            "path": {
                "type": "string",
                "description": "Where the gateway's login host takes it: send https://<login host><path>",
            },
        }
    ),
    "PasswordResetLink": output(
        {
            "token": {"type": "string", "description": "The one-time token: shown this once, never again."},
            "expires_at": DATETIME,
            "path": {
                "type": "string",
                "description": "Where the gateway's login host takes it: send https://<login host><path>",
            },
        }
    ),
    "AccessEntry": output(
        {
            "id": {"type": "integer"},
            "at": DATETIME,
            "org_id": {"type": ["string", "null"]},
            "resource_id": {"type": ["string", "null"]},
            "kind": {"type": "string", "enum": list(ACCESS_KINDS)},
            "outcome": {"type": "string", "enum": list(ACCESS_OUTCOMES)},
            "reason": {"type": "string"},
            "user_id": {"type": ["string", "null"]},
            "subject": {
                "type": ["string", "null"],
                "description": "an email address, or a share link's name",
            },
            "method": {"type": ["string", "null"]},
            "host": {"type": ["string", "null"]},
            "path": {"type": ["string", "null"]},
            "client_address": {"type": ["string", "null"]},
            "rule_id": {"type": ["string", "null"]},
            "count": {
                "type": "integer",
                "minimum": 1,
                "description": "alike allowed requests written as one row",
            },
        }
    ),
    "Status": {"type": "object", "description": "The gateway's live status (sites online, tunnels)."},
    # -- the console -------------------------------------------------------------------------------
    "MeOrganization": output(
        {
            "id": ID,
            "name": NAME,
            "role": {
                "type": ["string", "null"],
                "description": "the user's role there (Owner, Admin, Member or a custom one); null for a key",
            },
        }
    ),
    "Me": obj(
        {
            "kind": {"type": "string", "enum": ["user", "api_key"]},
            "user": output(
                {"id": ID, "email": {"type": "string"}, "name": {"type": ["string", "null"]}},
                description="kind user: the signed-in user (name: their display name)",
            ),
            "key": output(
                {"prefix": {"type": "string"}, "org_id": {"type": ["string", "null"]}},
                description="kind api_key: the key (org_id null: an instance-wide key)",
            ),
            "orgs": {
                "type": "array",
                "items": ref("MeOrganization"),
                "description": "the organizations the caller may act in",
            },
        },
        ("kind", "orgs"),
        description="Who is calling: a console user (user) or an API key (key).",
    ),
    "LauncherEntry": obj(
        {
            "org_id": ID,
            "org_name": NAME,
            "id": ID,
            "name": NAME,
            "kind": {"type": "string", "enum": list(RESOURCE_KINDS)},
            "url": {
                "type": ["string", "null"],
                "description": "HTTP resources: https://hostname[:port]/path_prefix (null for a wildcard "
                "hostname: there is no one address to link to)",
            },
            "address": {
                "type": "string",
                "description": "TCP and UDP resources: the gateway's public host and the resource's port",
            },
            "public": {**BOOLEAN, "description": "anyone may open it without signing in"},
        },
        ("org_id", "org_name", "id", "name", "kind", "public"),
    ),
    "OverviewTunnel": output(
        {
            "gateway": {"type": "string", "description": "the gateway the tunnel ends at (its name)"},
            "transport": {"type": "string", "enum": ["tls", "wss"]},
            "rtt_ms": {
                "type": ["number", "null"],
                "description": "the last ping's round trip; null: none",
            },
            "since": nullable(DATETIME),
            "edge_version": {"type": ["string", "null"], "description": "as the edge's HELLO said"},
        }
    ),
    "OverviewSite": output(
        {
            "id": ID,
            "name": NAME,
            "enabled": BOOLEAN,
            "online": {**BOOLEAN, "description": "it has a tunnel up to this gateway"},
            "tunnels": {"type": "array", "items": ref("OverviewTunnel")},
        }
    ),
    "OverviewTarget": output(
        {
            "id": ID,
            "site_id": ID,
            "target": {"type": "string", "description": "host:port, seen from the site"},
            "enabled": BOOLEAN,
            "online": {**BOOLEAN, "description": "its site has a tunnel up to this gateway"},
            "healthy": {
                "type": ["boolean", "null"],
                "description": "its edge's last health report; null: unknown, or no health check",
            },
            "detail": {"type": ["string", "null"], "description": "why, as the edge said"},
        }
    ),
    "OverviewResource": obj(
        {
            "id": ID,
            "name": NAME,
            "kind": {"type": "string", "enum": list(RESOURCE_KINDS)},
            "enabled": BOOLEAN,
            "hostname": {"type": "string", "description": "HTTP resources"},
            "path_prefix": {"type": "string", "description": "HTTP resources"},
            "listen": {"type": ["integer", "null"], "description": "TCP and UDP resources: the public port"},
            "targets": {"type": "array", "items": ref("OverviewTarget")},
        },
        ("id", "name", "kind", "enabled", "targets"),
    ),
    "Overview": output(
        {
            "sites": {"type": "array", "items": ref("OverviewSite")},
            "resources": {"type": "array", "items": ref("OverviewResource")},
            "last_hour": output(
                {
                    "requests": {"type": "integer", "minimum": 0},
                    "denials": {"type": "integer", "minimum": 0},
                    "by_resource": {
                        "type": "array",
                        "items": output(
                            {
                                "resource_id": {"type": ["string", "null"]},
                                "requests": {"type": "integer", "minimum": 0},
                                "denials": {"type": "integer", "minimum": 0},
                            }
                        ),
                    },
                },
                description="requests (HTTP requests and TCP connections) and denials of the last hour",
            ),
            "signins": {
                "type": "array",
                "items": ref("AccessEntry"),
                "description": "the latest sign-ins of the organization's members and to its resources",
            },
        },
        description="The organization now: live state from this gateway's memory, the rest from the store.",
    ),
    "LauncherPage": output(
        {"items": {"type": "array", "items": ref("LauncherEntry")}},
        description="Every resource the caller may open (not paginated).",
    ),
}

SCHEMAS["RuleTest"] = obj(
    {
        "method": string(
            32, pattern="^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", description="an HTTP method, such as GET"
        ),
        "path": string(
            PATH_LENGTH, pattern="^/", description="the request target as sent: /path, maybe with ?query"
        ),
        "client_address": string(64, description="the client's IP address (v4 or v6)"),
    },
    ("method", "path", "client_address"),
    description="A request to try against the resource's rules (for an anonymous visitor).",
)
SCHEMAS["RuleTestResult"] = output(
    {
        "decision": {
            "type": "string",
            "enum": ["allow", "deny", "authenticate", "bypass", "not_routed", "internal"],
            "description": "allow, deny, authenticate (sent to sign in), bypass (let through by a bypass "
            "rule); not_routed: the path is not under the resource's prefix; internal: the gateway "
            "answers the path itself",
        },
        "rule": {
            **SCHEMAS["Rule"],
            "type": ["object", "null"],
            "description": "the rule that decided; null: the resource's default",
        },
        "reason": {"type": "string", "description": "why, as the access log would say it"},
    }
)

SCHEMAS["AccessStats"] = output(
    {
        "bucket_seconds": integer(60, 86400),
        "series": {
            "type": "array",
            "items": output(
                {
                    "resource_id": {"type": ["string", "null"]},
                    "name": {"type": ["string", "null"], "description": "null: the resource is gone"},
                    "points": {
                        "type": "array",
                        "description": "[start of the bucket, allowed, denied], in time order; buckets "
                        "without requests are left out",
                        "items": {"type": "array", "minItems": 3, "maxItems": 3},
                    },
                }
            ),
        },
    },
    description="Requests (and TCP connections) per resource over time. Requests sent to sign in are "
    "neither allowed nor denied.",
)

for _item in ("Organization", "Role", "Membership", "User", "Site", "Resource", "Target", "Grant", "Rule"):
    SCHEMAS[f"{_item}Page"] = page_schema(_item)
SCHEMAS["ApiKeyPage"] = page_schema("ApiKey")
SCHEMAS["AuditEntryPage"] = page_schema("AuditEntry")
for _item in ("ShareLink", "Session", "AccessEntry"):
    SCHEMAS[f"{_item}Page"] = page_schema(_item)

#: Query parameters shared by every list.
LIMIT: JSON = integer(1, MAX_LIMIT, description="Items per page (default 100)")
CURSOR: JSON = string(1000, pattern="^[A-Za-z0-9_-]+$", description="next_cursor of the previous page")
