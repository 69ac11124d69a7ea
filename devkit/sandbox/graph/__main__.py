import sys

from devkit.sandbox.graph.cli import main

sys.exit(main())
