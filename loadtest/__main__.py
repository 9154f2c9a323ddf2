from __future__ import annotations

import sys

if sys.argv[1:2] == ["download"]:  # archive segment downloads against nginx: its own options
    from loadtest.download import main as download

    sys.exit(download(sys.argv[2:]))

from loadtest.run import main

sys.exit(main())
