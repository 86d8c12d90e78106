"""`python -m supcon.report RUNS_DIR [--out OUT] [--recipe R]`: the command line lives with the recipe reader
(`supcon.experiment.report_cli`), the one entry point of this wing that reads recipes."""

import sys

from supcon.experiment import report_cli

if __name__ == "__main__":
    sys.exit(report_cli.main(sys.argv[1:]))
