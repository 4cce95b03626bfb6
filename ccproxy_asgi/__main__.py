import sys

from ccproxy_asgi.app.cli import main

sys.exit(main())
