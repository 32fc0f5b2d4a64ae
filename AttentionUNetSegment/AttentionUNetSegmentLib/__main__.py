"""`python -m AttentionUNetSegmentLib ...` == `attention-unet-segment ...` (used by the Slicer module)."""

import sys

from .cli.main import main

sys.exit(main())
