import sys

from loopwm.cli import main

sys.exit(main())
