import sys

from kubetune_operator.cli import main

sys.exit(main())
