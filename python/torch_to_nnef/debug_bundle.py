"""``python -m torch_to_nnef.debug_bundle BUNDLE.tgz``: replays a failed check (the documented
command; the code lives in :mod:`torch_to_nnef.check.debug_bundle`).
"""

import sys

from torch_to_nnef.check.debug_bundle import main, replay, write_debug_bundle

__all__ = ["main", "replay", "write_debug_bundle"]

if __name__ == "__main__":
    sys.exit(main())
