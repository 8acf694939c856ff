"""``python -m roofplan``: the command line. Without its runtime dependencies installed (typer,
rich, numpy, scipy, pulp, pyyaml: ``pip install -e .``) ``--help`` still lists the commands
(:mod:`roofplan.cli.plain_help`, standard library only) and exits 0; anything else says in one
line what is missing and exits 2."""

import sys

try:
    from roofplan.cli.app import main
except ModuleNotFoundError as exc:  # an interpreter without roofplan's dependencies
    if sys.argv[1:] in (["--help"], ["-h"]):
        from roofplan.cli.plain_help import render

        sys.stdout.write(render(exc.name))
        raise SystemExit(0) from None
    sys.stderr.write(
        f"error: roofplan needs the Python package {exc.name!r}, which this interpreter "
        f"({sys.executable}) does not have; install roofplan with: pip install -e . (or pip install roofplan)\n"
    )
    raise SystemExit(2) from None

main()
