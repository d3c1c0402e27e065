import sys

from cloudhub.cli import main

sys.exit(main())
