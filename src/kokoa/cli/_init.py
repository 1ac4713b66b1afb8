"""``kokoa init``: create the store, the first organization, its owner and an admin API key."""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from pathlib import Path

from kokoa import store as st

#: The admin API key written by ``kokoa init`` (mode 0600).
ADMIN_KEY_FILE = "admin.key"


class InitError(Exception):
    """``kokoa init`` cannot go on; the message says why and what to do."""


#: How long the one-time link that sets the owner's password stays valid.
SETUP_LINK_LIFETIME = timedelta(days=7)
#: The login host of a gateway started by ``make run`` (``--login-url`` names another).
DEFAULT_LOGIN_URL = "https://login.localhost:8443"


def init(data_dir: Path, email: str, org_name: str, password: str | None, database: str | None) -> dict:
    """Blocking (a command line has no reactor): returns what was made. Without a password the owner
    is invited: ``setup_token`` is a one-time link's token that sets it."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = data_dir / ADMIN_KEY_FILE
    if key_path.exists():
        raise InitError(f"{key_path} exists: this data directory is initialized already")
    url = st.database_url(data_dir, database)
    engine, revision = st.open_engine(url)
    written = False
    try:
        with engine.begin() as conn:
            if st.list_organizations(conn, limit=1).items:
                raise InitError(
                    f"the store at {_shown(url)} has organizations already: nothing to initialize"
                )
            org = st.create_organization(conn, org_name)
            status = "active" if password else "invited"
            user = st.create_user(conn, email, password=password, status=status)
            setup_token = None
            if password is None:
                setup_token = st.create_user_token(
                    conn, user.id, "setup", lifetime=SETUP_LINK_LIFETIME, created_by="cli:init"
                )
            st.add_member(conn, org.id, user.id, st.get_role_by_name(conn, org.id, st.OWNER).id)
            key, secret = st.create_api_key(conn, "kokoa init (admin)", org_id=None, scopes=["*"])
            st.append_audit(
                conn,
                f"cli:init ({os.environ.get('USER', '?')})",
                "instance.init",
                org_id=org.id,
                object_kind="organization",
                object_id=org.id,
                after={"organization": org.name, "owner": user.email, "api_key": key.prefix},
            )
            # Written inside the transaction: if the file cannot be written, nothing is kept.
            _write_secret_file(key_path, secret + "\n")
            written = True
    except BaseException:
        # ... and if the commit fails, no key file is left to block the next attempt.
        if written:
            key_path.unlink(missing_ok=True)
        raise
    finally:
        engine.dispose()
    return {
        "org": org,
        "user": user,
        "key_path": key_path,
        "revision": revision,
        "url": url,
        "setup_token": setup_token,
    }


def _write_secret_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def run(args: argparse.Namespace) -> int:
    password = None
    if args.password_file:
        try:
            password = Path(args.password_file).read_text().rstrip("\n")
        except OSError as e:
            raise InitError(f"cannot read {args.password_file}: {e.strerror}") from None
        if not password:
            raise InitError(f"{args.password_file} is empty")
    try:
        made = init(Path(args.data_dir), args.email, args.org, password, args.database)
    except st.StoreError as e:
        raise InitError(f"{e.field}: {e.message}" if e.field else e.message) from None
    org, user = made["org"], made["user"]
    print(f"Initialized {_shown(made['url'])} (schema {made['revision']}).")
    print(f"  organization  {org.name}  ({org.id})")
    print(f"  owner         {user.email}")
    print(f"  admin API key {made['key_path']}  (mode 0600; the CLI and scripts use it)")
    if made["setup_token"] is not None:
        days = SETUP_LINK_LIFETIME.days
        print()
        print(f"The owner has no password yet. With the gateway running, open this link within {days} days:")
        print(f"  {args.login_url.rstrip('/')}/setup?token={made['setup_token']}")
    print()
    print("Next: start the gateway on this data directory, then add a site:")
    print(f"  twistd --pidfile= -n kokoa --data-dir {args.data_dir}")
    print(f"  kokoa --data-dir {args.data_dir} site add home")
    return 0
