import sys

from ccproxy_asgi.cli import main

sys.exit(main())
