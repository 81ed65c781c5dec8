"""The dashboard: server-rendered pages (Jinja2) and htmx fragments over the API's own route
functions, with every script and style shipped in ``clinician_api/static`` (no CDN)."""
