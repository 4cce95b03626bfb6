"""`python -m ccproxy_asgi.mock_upstream [flags]`: serve the mock upstream (see `--help`)."""

from ccproxy_asgi.mock_upstream.cli import main

raise SystemExit(main())
