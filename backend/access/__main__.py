"""``python -m backend.access``: manage the local accounts (``backend.access.auth.main``)."""

import sys

from backend.access.auth import main

sys.exit(main())
