from __future__ import annotations

import sys

from loadtest.run import main

sys.exit(main())
