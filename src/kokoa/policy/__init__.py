"""The policy engine: whether a request may reach a resource, decided from memory, in pure code.

Per resource: its rules (priority order, lowest first), whether it is public, and its grants (role
ids and user ids). For one request (the router's ``match_path``, the method, the client's address,
the signed-in identity or None):

1. The first rule whose every set condition (path, method, client network; see :mod:`._rules`)
   matches decides:

   - ``deny``: denied;
   - ``bypass``: allowed without authentication ("bypass authentication", as the store describes
     it), whoever asks;
   - ``allow``: the request goes through the resource's authentication and grants, even on a public
     resource: anonymous → ``authenticate``; signed in with a grant (to the user, or to one of its
     roles) → allowed; without one → denied.

2. No rule matches: the resource's default. Public → allowed; otherwise anonymous →
   ``authenticate``, signed in with a grant → allowed, without → denied.

Paths are compared as the router compared them (rules are normalized with the router's own
functions when the policy is built). Two exceptions make the engine stricter, never looser:

- a path holding an encoded slash (``%2F``, or ``%5C``) is also decided with those read as ``/``
  (and ``..`` resolved), since upstreams such as nginx do that;
- ``deny`` and ``allow`` rules are also matched against the *folded* path (case-folded, trailing
  dots and whitespace trimmed from every segment: :func:`fold_path`), since case-insensitive
  upstreams and those that trim (Windows, IIS) read ``/ADMIN`` and ``/admin.`` as ``/admin``; a
  ``bypass`` rule matches only a path that is under it exactly, and still under it once folded.

The stricter of the decisions wins.

Build a :class:`PolicySet` once per configuration version from the store's rows; per request,
``policies.decide_route(route, method, client_ip, identity)`` parses nothing but the client address
(and only for resources that have address rules).
"""

from ._engine import Decision, Identity, Outcome, PolicySet, ResourcePolicy, decide
from ._rules import ACTIONS, Action, PolicyError, Rule, fold_path, parse_address, parse_network

__all__ = [
    "ACTIONS",
    "Action",
    "Decision",
    "Identity",
    "Outcome",
    "PolicyError",
    "PolicySet",
    "ResourcePolicy",
    "Rule",
    "decide",
    "fold_path",
    "parse_address",
    "parse_network",
]
