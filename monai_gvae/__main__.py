"""``python -m monai_gvae``: the ``monai-gvae`` command line (see :mod:`monai_gvae.cli`)."""

import sys

from monai_gvae.cli import main

if __name__ == "__main__":
    sys.exit(main())
