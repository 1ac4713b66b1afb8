"""Kokoa: safe access to private services through an outbound tunnel.

An *edge* next to the private services dials out to a public *gateway*, which
authenticates users and carries their traffic through the edge's tunnel.
"""

__version__ = "0.1.0"
