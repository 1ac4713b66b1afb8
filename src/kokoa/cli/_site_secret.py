"""``kokoa site-secret``: a secret for a site of the gateway's config file."""

from __future__ import annotations

import argparse
import sys

from kokoa.gateway._model import SITE_ID
from kokoa.secrets import generate_secret, hash_secret


def run(args: argparse.Namespace) -> int:
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
