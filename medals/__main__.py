import sys

from medals.cli import main

sys.exit(main())
