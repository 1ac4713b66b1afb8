"""Share links: tokens shown once and stored hashed, expiry, revocation, and uses that never exceed
``max_uses``, even when redeemed concurrently."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select
from store_support import NOW, count

from kokoa import store as st
from kokoa.store import _schema as s

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved


@pytest.fixture
def web(conn):
    org = st.create_organization(conn, "Acme", now=NOW)
    return st.create_resource(conn, org.id, "web", "http", hostname="app.example.com", now=NOW)


def test_create_returns_the_token_once_and_stores_its_hash(conn, web):
    link, token = st.create_share_link(conn, web.id, " guests ", created_by="key:kk_abcd1234", now=NOW)
    assert link.id.startswith("share_") and link.prefix.startswith("kks_") and len(link.prefix) == 12
    assert token.startswith(link.prefix + "_") and len(token) > 50
    assert (link.resource_id, link.name, link.uses, link.max_uses, link.expires_at, link.revoked_at) == (
        web.id,
        "guests",
        0,
        None,
        None,
        None,
    )
    assert link.created_by == "key:kk_abcd1234" and link.created_at == link.updated_at == NOW
    assert not hasattr(link, "token_hash")
    stored = conn.execute(select(s.share_links.c.token_hash)).scalar_one()
    assert stored.startswith("sha256:") and token[13:] not in stored
    assert st.get_share_link(conn, link.id) == link
    found = st.redeem_share_link(conn, token, count_use=False, now=NOW)
    assert found == link


def test_prefixes_are_unique(conn, web):
    prefixes = {st.create_share_link(conn, web.id, f"link {i}")[0].prefix for i in range(20)}
    assert len(prefixes) == 20


@pytest.mark.parametrize(
    "presented",
    ["", "kks_", "kks_abcdefgh", "kks_abcdefgh_", "kk_abcdefgh_secret", "kks_abcdefghXsecret", None, 5],
)
def test_malformed_tokens_are_refused(conn, web, presented):
    st.create_share_link(conn, web.id, "guests")
    assert st.redeem_share_link(conn, presented, count_use=True) is None


def test_a_wrong_secret_with_a_known_prefix_is_refused(conn, web):
    link, token = st.create_share_link(conn, web.id, "guests")
    assert st.redeem_share_link(conn, token[:-1] + ("A" if token[-1] != "A" else "B"), count_use=True) is None
    assert st.redeem_share_link(conn, link.prefix + "_" + "x" * 43, count_use=True) is None
    assert st.redeem_share_link(conn, token + "\x00", count_use=True) is None
    assert st.get_share_link(conn, link.id).uses == 0


def test_expiry(conn, web):
    link, token = st.create_share_link(conn, web.id, "guests", expires_at=NOW + timedelta(hours=1), now=NOW)
    assert st.redeem_share_link(conn, token, count_use=True, now=NOW + timedelta(minutes=59)) is not None
    assert st.redeem_share_link(conn, token, count_use=True, now=NOW + timedelta(hours=1)) is None
    assert st.get_share_link(conn, link.id).uses == 1
    with pytest.raises(st.Invalid) as e:
        st.create_share_link(conn, web.id, "old", expires_at=NOW, now=NOW)
    assert e.value.field == "expires_at" and "future" in e.value.message
    with pytest.raises(st.Invalid) as e:
        st.create_share_link(conn, web.id, "naive", expires_at=NOW.replace(tzinfo=None))
    assert e.value.field == "expires_at"


def test_uses_are_counted_only_when_asked_and_never_beyond_max_uses(conn, web):
    link, token = st.create_share_link(conn, web.id, "once", max_uses=1, now=NOW)
    assert st.redeem_share_link(conn, token, count_use=False, now=NOW) is not None
    assert st.redeem_share_link(conn, token, count_use=False, now=NOW) is not None
    first = st.redeem_share_link(conn, token, count_use=True, now=NOW)
    assert first is not None and first.uses == 1 and not first.is_active(NOW)
    assert st.redeem_share_link(conn, token, count_use=True, now=NOW) is None
    assert st.redeem_share_link(conn, token, count_use=False, now=NOW) is None  # used up
    assert st.get_share_link(conn, link.id).uses == 1

    _, unlimited = st.create_share_link(conn, web.id, "many", now=NOW)
    for n in range(1, 4):
        assert st.redeem_share_link(conn, unlimited, count_use=True, now=NOW).uses == n


def test_concurrent_redemptions_never_exceed_max_uses(engine):
    """Two transactions redeem a one-use link at once: the second waits for the first, then gets None."""
    with engine.begin() as conn:
        org = st.create_organization(conn, "Acme")
        web = st.create_resource(conn, org.id, "web", "http", hostname="app.example.com")
        link, token = st.create_share_link(conn, web.id, "once", max_uses=1)
    results: list[object] = []

    def second() -> None:
        with engine.begin() as other:
            results.append(st.redeem_share_link(other, token, count_use=True))

    with engine.begin() as first:
        assert st.redeem_share_link(first, token, count_use=True) is not None
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)  # the second redemption now waits for the first's lock
    thread.join(timeout=15)
    assert results == [None]
    with engine.connect() as conn:
        assert st.get_share_link(conn, link.id).uses == 1


def test_bad_links_are_refused(conn, web):
    for kw, field in [
        ({"max_uses": 0}, "max_uses"),
        ({"max_uses": -1}, "max_uses"),
        ({"max_uses": True}, "max_uses"),
        ({"max_uses": 1.5}, "max_uses"),
        ({"created_by": ""}, "created_by"),
    ]:
        with pytest.raises(st.Invalid) as e:
            st.create_share_link(conn, web.id, "guests", **kw)
        assert e.value.field == field
    with pytest.raises(st.Invalid) as e:
        st.create_share_link(conn, web.id, "")
    assert e.value.field == "name"
    with pytest.raises(st.NotFound):
        st.create_share_link(conn, "res_nope", "guests")
    ssh = st.create_resource(conn, web.org_id, "ssh", "tcp", public_port=2222)
    with pytest.raises(st.Invalid) as e:
        st.create_share_link(conn, ssh.id, "guests")
    assert e.value.field == "resource_id" and "HTTP" in e.value.message
    assert count(conn, s.share_links) == 0
    assert st.create_share_link(conn, web.id, "guests", max_uses=1)[0].max_uses == 1


def test_revoke_and_delete_are_configuration_changes(conn, web):
    link, token = st.create_share_link(conn, web.id, "guests", now=NOW)
    version = st.config_version(conn)
    revoked = st.revoke_share_link(conn, link.id, now=NOW + timedelta(minutes=1))
    assert revoked.revoked_at == revoked.updated_at == NOW + timedelta(minutes=1)
    assert st.redeem_share_link(conn, token, count_use=False) is None
    changes = st.changes_since(conn, version)
    assert [(c.kind, c.object_id, c.op, c.org_id) for c in changes] == [
        ("share_link", link.id, "update", web.org_id)
    ]
    assert st.revoke_share_link(conn, link.id, now=NOW + timedelta(hours=1)) == revoked  # no change
    assert st.config_version(conn) == version + 1

    st.delete_share_link(conn, link.id)
    assert st.changes_since(conn, version + 1)[0].op == "delete"
    with pytest.raises(st.NotFound):
        st.get_share_link(conn, link.id)
    with pytest.raises(st.NotFound):
        st.delete_share_link(conn, link.id)


def test_redeeming_is_not_a_configuration_change(conn, web):
    _, token = st.create_share_link(conn, web.id, "guests")
    version = st.config_version(conn)
    assert st.redeem_share_link(conn, token, count_use=True) is not None
    assert st.config_version(conn) == version


def test_lists_by_resource_and_organization(conn, web):
    other_org = st.create_organization(conn, "Other", now=NOW)
    api = st.create_resource(conn, web.org_id, "api", "http", hostname="api.example.com", now=NOW)
    far = st.create_resource(conn, other_org.id, "far", "http", hostname="far.example.com", now=NOW)
    a = st.create_share_link(conn, web.id, "a", now=NOW)[0]
    b = st.create_share_link(conn, api.id, "b", now=NOW + timedelta(seconds=1))[0]
    c = st.create_share_link(conn, far.id, "c", now=NOW + timedelta(seconds=2))[0]
    assert st.list_share_links(conn, resource_id=web.id).items == (a,)
    assert st.list_share_links(conn, org_id=web.org_id).items == (a, b)
    assert st.list_share_links(conn, org_id=other_org.id, resource_id=web.id).items == ()
    assert st.list_share_links(conn).items == (a, b, c)
    first = st.list_share_links(conn, limit=2)
    assert first.items == (a, b) and first.next_cursor is not None
    assert st.list_share_links(conn, limit=2, cursor=first.next_cursor).items == (c,)
    with pytest.raises(st.Invalid):
        st.list_share_links(conn, limit=0)


def test_links_go_with_their_resource(conn, web):
    st.create_share_link(conn, web.id, "guests")
    st.delete_resource(conn, web.id)
    assert count(conn, s.share_links) == 0
