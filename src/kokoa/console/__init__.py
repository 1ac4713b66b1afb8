"""The web console: static HTML, CSS and ES modules served by the gateway on the login host.

No build step: the files under ``static/`` are what the browser runs (with a few vendored libraries,
see ``static/vendor/VENDOR.md``). :class:`ConsoleAssets` serves them from memory at ``/static/``;
:func:`console_shell` is the page every console view starts from. Both carry :data:`CONSOLE_CSP`.
"""

from ._assets import CONSOLE_CSP, Asset, ConsoleAssets, console_shell, load_assets

__all__ = ["CONSOLE_CSP", "Asset", "ConsoleAssets", "console_shell", "load_assets"]
