"""The web playground and console: static files served by ``fovea serve`` at ``/``.

Plain HTML, CSS and JavaScript modules, no build step and no third-party code: the page talks
only to Fovea's public API with the user's API key (kept in the browser's session storage), so
everything it does a client can do too (docs/decisions.md).
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
INDEX_HTML = STATIC_DIR / "index.html"

__all__ = ["INDEX_HTML", "STATIC_DIR"]
