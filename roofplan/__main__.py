"""``python -m roofplan``: the command line. Without its runtime dependencies installed (typer,
rich, numpy, scipy, pulp, pyyaml: ``pip install -e .``) it says so in one line and exits 2."""

import sys

try:
    from roofplan.cli.app import main
except ModuleNotFoundError as exc:  # an interpreter without roofplan's dependencies
    sys.stderr.write(
        f"error: roofplan needs the Python package {exc.name!r}, which this interpreter "
        f"({sys.executable}) does not have; install roofplan with: pip install -e . (or pip install roofplan)\n"
    )
    raise SystemExit(2) from None

main()
