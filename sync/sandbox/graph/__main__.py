import sys

from sync.sandbox.graph.cli import main

sys.exit(main())
