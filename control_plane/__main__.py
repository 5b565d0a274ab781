import sys

from control_plane.main import main

sys.exit(main())
