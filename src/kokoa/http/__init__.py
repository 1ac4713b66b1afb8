"""The HTTP(S) front: a streaming, strict reverse proxy whose upstreams sit behind edges."""
