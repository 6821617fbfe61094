import sys

from riskrl.cli import main

sys.exit(main())
