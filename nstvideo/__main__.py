import sys

from nstvideo.cli import main

sys.exit(main())
