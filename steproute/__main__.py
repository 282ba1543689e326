import sys

from steproute.cli import main

sys.exit(main())
