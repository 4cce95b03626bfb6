"""Module-level app for ASGI servers: `uvicorn ccproxy_asgi.asgi:app` (configured from the environment).

Every server worker imports this module and builds its own app from `CCPROXY_*` variables, which is how
the CLI passes configuration to uvicorn, hypercorn and granian alike.
"""

from ccproxy_asgi.app import create_app

app = create_app()
