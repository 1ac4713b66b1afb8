"""``kokoa``: the admin command line.

Until the control plane lands, sites live in the gateway's config file; this
command makes their secrets.
"""

from __future__ import annotations

import argparse
import sys

from kokoa import __version__
from kokoa.gateway._model import SITE_ID
from kokoa.secrets import generate_secret, hash_secret


def _site_secret(args: argparse.Namespace) -> int:
    if not SITE_ID.match(args.site_id):
        print(
            f"kokoa: site id {args.site_id!r} must be 1-63 lowercase letters, digits, '-' or '_'",
            file=sys.stderr,
        )
        return 2
    secret = generate_secret()
    gateway = args.gateway or "tls:GATEWAY_HOST:7443"
    print(
        f"""# 1. Add this to the gateway's config file (kokoa.toml), then restart the gateway:
[[sites]]
id = "{args.site_id}"
secret_hash = "{hash_secret(secret)}"

# 2. The secret is shown only now (the gateway keeps only its hash). On the edge's machine,
#    with the gateway's CA certificate (DATA_DIR/tls/ca.pem) copied next to it:
#    KOKOA_SITE_SECRET='{secret}' twistd --pidfile= -n kokoa-edge \\
#        --gateway {gateway} --site {args.site_id} --ca-file ca.pem""",
        file=sys.stdout,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kokoa", description="Kokoa admin command line.")
    parser.add_argument("--version", action="version", version=f"kokoa {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    secret = commands.add_parser("site-secret", help="make a new site id's secret and its hash")
    secret.add_argument("site_id", help="the site's id, e.g. home-lab")
    secret.add_argument("--gateway", help="the gateway address the edge will dial (for the printed command)")
    secret.set_defaults(run=_site_secret)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
