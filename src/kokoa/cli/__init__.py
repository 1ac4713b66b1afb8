"""``kokoa``: the admin command line.

``init`` works on a data directory; the other commands talk to a running
gateway's admin API (``--api URL`` and a key from ``KOKOA_API_KEY`` or
``--key-file``; by default those of ``--data-dir``).
"""

from __future__ import annotations

import argparse
import sys

from kokoa import __version__
from kokoa.store import LB_METHODS

from . import _apply, _commands, _connect, _init, _site_secret
from ._client import ApiError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kokoa", description="Kokoa admin command line.")
    parser.add_argument("--version", action="version", version=f"kokoa {__version__}")
    parser.add_argument(
        "--data-dir", "-d", default="data", help="the gateway's data directory (default ./data)"
    )
    parser.add_argument(
        "--api", help="the admin API, e.g. http://127.0.0.1:7000 (default: the data dir's gateway)"
    )
    parser.add_argument(
        "--key-file", help="file with an API key (default: $KOKOA_API_KEY, then DATA_DIR/admin.key)"
    )
    parser.add_argument("--org", help="organization name or id (default: the only one)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser(
        "init", help="create the store, the first organization, its owner, an admin key"
    )
    init.add_argument("--email", required=True, help="the owner's email address")
    init.add_argument(
        "--org-name", dest="org", default="default", help="the organization's name (default: default)"
    )
    init.add_argument("--password-file", help="file holding the owner's password")
    init.add_argument(
        "--login-url",
        default=_init.DEFAULT_LOGIN_URL,
        help="the gateway's login host, for the link that sets the owner's password when no "
        f"--password-file is given (default: {_init.DEFAULT_LOGIN_URL}, as `make run` serves it)",
    )
    init.add_argument("--database", help="postgresql://... (default: SQLite in the data directory)")
    init.set_defaults(run=_init.run)

    site = commands.add_parser("site", help="sites").add_subparsers(dest="action", required=True)
    site_add = site.add_parser(
        "add", help="add a site; prints its id, its secret (once) and the edge command"
    )
    site_add.add_argument("name")
    site_add.add_argument("--gateway", help="the tunnel address edges dial (default: from the data dir)")
    site_add.set_defaults(run=_commands.site_add)

    resource = commands.add_parser("resource", help="resources").add_subparsers(dest="action", required=True)
    add = resource.add_parser(
        "add", help="add a TCP resource with one target, or an HTTP resource with one or more"
    )
    add.add_argument("name")
    add.add_argument("--site", required=True, help="the site (name or id) whose edge reaches the targets")
    kind = add.add_mutually_exclusive_group(required=True)
    kind.add_argument("--tcp-port", type=int, help="TCP resource: the public port on the gateway")
    kind.add_argument("--host", help="HTTP resource: the public hostname, e.g. app.example.com")
    add.add_argument("--path", default="/", help="HTTP resource: path prefix (default /)")
    add.add_argument(
        "--target",
        required=True,
        action="append",
        help="HOST:PORT (TCP) or http(s)://HOST:PORT (HTTP; repeat it for several targets)",
    )
    add.add_argument(
        "--lb-method",
        choices=LB_METHODS,
        help="HTTP resource: how requests are spread over the targets (default round_robin)",
    )
    add.add_argument(
        "--sticky", action="store_true", default=None, help="HTTP resource: pin each client to a target"
    )
    add.add_argument(
        "--public",
        action="store_true",
        default=None,
        help="HTTP resource: anyone may reach it without signing in (default: sign-in and a grant)",
    )
    add.add_argument(
        "--redirect-https",
        action="store_true",
        default=None,
        help="HTTP resource: answer plain-HTTP requests with a redirect to https",
    )
    add.add_argument(
        "--hsts-max-age",
        type=int,
        metavar="SECONDS",
        help="HTTP resource: send Strict-Transport-Security with this max-age on HTTPS answers",
    )
    add.set_defaults(run=_commands.resource_add)
    grant = resource.add_parser("grant", help="let a role's members, or one member, reach a resource")
    grant.add_argument("name", help="the resource (name or id)")
    who = grant.add_mutually_exclusive_group(required=True)
    who.add_argument("--role", help="a role of the organization, e.g. Member")
    who.add_argument("--user", help="a member, by email or id")
    grant.set_defaults(run=_commands.resource_grant)

    apply = commands.add_parser("apply", help="make sites and resources match a YAML file (idempotent)")
    apply.add_argument("-f", "--file", required=True, help="the YAML file (see `kokoa apply --help`)")
    apply.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    apply.add_argument(
        "--prune", action="store_true", help="also delete resources and targets not in the file"
    )
    apply.set_defaults(run=_apply.run)

    status = commands.add_parser("status", help="sites online, their tunnels, resources")
    status.set_defaults(run=_commands.status)

    secret = commands.add_parser("site-secret", help="a site secret and its hash, for the config file")
    secret.add_argument("site_id", help="the site's id, e.g. home-lab")
    secret.add_argument("--gateway", help="the gateway address the edge will dial (for the printed command)")
    secret.set_defaults(run=_site_secret.run)

    _connect.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (ApiError, _init.InitError) as e:
        return _commands.fail(str(e))


if __name__ == "__main__":
    sys.exit(main())
