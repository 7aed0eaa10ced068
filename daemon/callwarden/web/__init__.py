"""callwarden web: the page colleagues work their callbacks in, and the supervisors' view.

Its own process (``callwarden web``), sharing the daemon's store: the daemon's hotkey loop never
waits for a web request, and the page can be restarted or run several times on its own
(docs/web.md). Server-rendered (Starlette, Jinja2, htmx), English and German.
"""
