"""What a run prints: the epoch line (every number a loop passes), the summary, --no-progress and --quiet."""
import io

from ssnas.runs.console import Console, epoch_line, resume_words
from ssnas.search import truth_words


def test_epoch_line_shows_loss_parts_known_and_unknown_numbers_and_time():
    stats = {"loss": 5.43211, "nt_xent": 5.43211, "arch_loss": 5.4, "entropy_normal_norm": 0.9987,
             "entropy_reduce_norm": 0.95, "entropy_normal": 2.07, "op_margin_median": 0.00031,
             "parameter_free_share": 0.25, "new_statistic": 0.9123, "true_cifar10_test": 93.5,
             "rank_cifar10_test": 12, "top_pct_cifar10_test": 0.077, "seconds": 41.23, "images_per_s": 24.84}
    line = epoch_line(2, 50, stats, parts=["nt_xent"], notes=["genotype: 3 of 16 edges changed"])
    assert line.startswith("epoch  2/50  loss 5.4321 (nt_xent 5.4321)")
    assert "alpha entropy normal 0.999 reduce 0.950 of uniform" in line and "2.07" not in line
    assert "op margin 0.00031" in line and "parameter-free ops 25.0%" in line
    assert "new_statistic 0.9123" in line  # a statistic this module has never heard of still shows
    assert "93.5" not in line and "rank" not in line  # a benchmark's truth comes as the loop's one note
    assert line.endswith("genotype: 3 of 16 edges changed  41.2 s  24.8 img/s")


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_lines_persist_without_a_bar_and_quiet_prints_nothing():
    plain = io.StringIO()  # a log file: no bar, even with progress on
    console = Console(progress=True, stream=plain)
    assert not console.bars and list(console.steps(3, "epoch 1/1")) == [0, 1, 2]
    console.summary("ssnas search -> runs/x", [("data", "fashion-mnist: 64 images"), ("resume", None)],
                    ["--log-every 1 (2 steps per epoch)"])
    console.line("epoch 1/1  loss 1.0000")
    text = plain.getvalue()
    assert text.splitlines() == ["ssnas search -> runs/x", "  data: fashion-mnist: 64 images",
                                 "  derived (flags you did not set): --log-every 1 (2 steps per epoch)",
                                 "epoch 1/1  loss 1.0000"]
    silent = io.StringIO()
    quiet = Console(progress=True, quiet=True, stream=silent)
    quiet.summary("title", [("a", "b")], ["x"])
    quiet.line("epoch 1/1")
    quiet.warn("careful")
    assert list(quiet.steps(2, "e")) == [0, 1] and silent.getvalue() == ""


def test_on_a_terminal_the_bar_vanishes_and_the_epoch_line_stays():
    tty = Tty()
    console = Console(progress=True, stream=tty)
    assert console.bars
    for _ in console.steps(2, "epoch 1/1"):
        console.postfix(loss="1.0")
    console.line("epoch 1/1  loss 1.0000")
    assert tty.getvalue().rstrip().endswith("epoch 1/1  loss 1.0000")
    assert not Console(progress=False, stream=Tty()).bars  # --no-progress: lines only


def test_the_benchmark_note_names_the_first_column_its_rank_and_percentile():
    truth = {"true_cifar10_test": 93.514, "rank_cifar10_test": 12, "top_pct_cifar10_test": 0.077,
             "true_cifar100_test": 70.1, "rank_cifar100_test": 40, "top_pct_cifar100_test": 0.26}
    assert truth_words(truth) == ["true cifar10_test 93.51, rank 12 (top 0.1%)"]
    assert truth_words({"true_missing": 1}) == ["not in the benchmark"] and truth_words({}) == []


def test_the_resume_row_names_where_a_run_continues():
    assert resume_words(0, 5) is None
    assert resume_words(2, 5) == "from epoch 3 (2 of 5 finished)"
    assert resume_words(5, 5) == "all 5 epochs were already finished: nothing to do"
