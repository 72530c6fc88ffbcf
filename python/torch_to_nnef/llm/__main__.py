"""``python -m torch_to_nnef.llm``: the ``export_llm_to_tract`` command."""

import sys

from torch_to_nnef.llm.cli import main

sys.exit(main())
