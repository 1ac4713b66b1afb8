"""The login host: sign-in pages, single sign-on, and the one-time codes that carry a sign-in to a
resource's host.

A Klein app (:class:`LoginApp`), served by a twisted.web Site to which the HTTP front hands every
connection whose first request is for the login host (same listeners, same TLS). Its own session lives
in a ``__Host-`` cookie on the login host only; resource hosts get theirs by exchanging a one-time code
bound to the browser's nonce cookie on that host (``/authorize`` →
``https://<resource host>/.kokoa/auth/callback?code=...``).

Modules, one job each: ``_forms`` (CSRF and form parsing), ``_base`` (responses, where to go after
signing in, throttling, sealed cookies), ``_password`` (password and second factor, sign-out),
``_account`` (the user's sessions, password, second factor set-up), ``_resource`` (a resource's own
password, PIN or email code), ``_sso`` (OpenID Connect), ``_cli`` (``kokoa connect``), ``_links``
(setup, reset and invitation links), ``_app`` (the app and its Site).
"""

from ._app import LoginApp, LoginRequest
from ._forms import Refused

__all__ = ["LoginApp", "LoginRequest", "Refused"]
