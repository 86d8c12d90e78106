"""`python -m supcon.report RUNS_DIR [--out OUT] [--recipe R]`: the command line lives with the recipe reader
(`supcon.experiment.reporting`), the one entry point of this wing that reads recipes."""

import sys

from supcon.experiment import reporting

if __name__ == "__main__":
    sys.exit(reporting.main(sys.argv[1:]))
