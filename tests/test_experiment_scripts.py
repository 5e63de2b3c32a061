"""The comparison scripts' shared option parsing (experiments/_quick_args.sh): help, and one line for a bad option."""
import subprocess

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("script, first_words", [("compare_conrec.sh", "# ConRec against SimCLR"),
                                                 ("compare_continual.sh", "# Continual (class-incremental)")])
def test_help_prints_the_scripts_header_and_a_bad_option_is_one_line(script, first_words):
    path = ROOT / "experiments" / script
    shown = subprocess.run(["bash", str(path), "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and shown.stdout.startswith(first_words)
    assert "set -euo" not in shown.stdout  # the header only
    bad = subprocess.run(["bash", str(path), "--epochz", "3"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr == "unknown option --epochz (see --help)\n"
