from __future__ import annotations

import csv
import json
import random

from tests.cli_runner import ROOT, cx, cx_env
from tests.support.triage import few_labelled


def test_eval_triage_reports_every_figure_as_json(tmp_path, dsn):
    rows = list(csv.DictReader(open(ROOT / "samples" / "history" / "banking77-sample.csv", newline="")))
    random.Random(5).shuffle(rows)
    for name, part in (("train.csv", rows[:700]), ("test.csv", rows[700:])):
        with open(tmp_path / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "category"])
            writer.writeheader()
            writer.writerows(part)
    result = cx("eval", "triage", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                "--embeddings", "none", "--json", env=cx_env(DATABASE_URL=dsn), timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for key in ("accuracy", "macro_f1", "coverage_at_p98", "coverage_at_high", "precision_at_high", "n_test"):
        assert key in figures
    assert figures["n_test"] == len(rows) - 700
    assert figures["accuracy"] > 0.6
    assert figures["model"] == "tfidf-svm"


def test_eval_triage_names_a_bad_file(tmp_path, dsn):
    (tmp_path / "train.csv").write_text("text,label\nhello,x\n")
    result = cx("eval", "triage", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "train.csv"),
                env=cx_env(DATABASE_URL=dsn))
    assert result.returncode == 2
    assert "train.csv:1: the header lacks category" in result.stderr


def test_per_class_trains_on_n_rows_of_each_category_drawn_by_seed(tmp_path, dsn):
    rows = list(csv.DictReader(open(ROOT / "samples" / "history" / "banking77-sample.csv", newline="")))
    for name, part in (("train.csv", rows[:700]), ("test.csv", rows[700:])):
        with open(tmp_path / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "category"])
            writer.writeheader()
            writer.writerows(part)
    counts: dict[str, int] = {}
    for row in rows[:700]:
        counts[row["category"]] = counts.get(row["category"], 0) + 1
    args = ("eval", "triage", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
            "--embeddings", "none", "--per-class", "5", "--json")
    result = cx(*args, env=cx_env(DATABASE_URL=dsn), timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["n_train"] == sum(min(5, n) for n in counts.values())
    assert (figures["per_class"], figures["seed"]) == (5, 0)

    bad = cx(*args[:-3], "--per-class", "0", env=cx_env(DATABASE_URL=dsn))
    assert bad.returncode == 2 and "--per-class must be at least 1" in bad.stderr


def test_unlabelled_history_self_trains_a_small_one_and_counts_in_the_figures(tmp_path, dsn):
    labelled, unlabelled, test = few_labelled()
    for name, rows in (("train.csv", labelled), ("test.csv", test), ("unlabelled.csv", [(t, "") for t in unlabelled])):
        with open(tmp_path / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "category"])
            writer.writerows(rows)
    args = ("eval", "triage", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
            "--embeddings", "none", "--json")
    alone = cx(*args, env=cx_env(DATABASE_URL=dsn), timeout=300)
    taught = cx(*args, "--unlabelled", str(tmp_path / "unlabelled.csv"), env=cx_env(DATABASE_URL=dsn), timeout=300)
    assert alone.returncode == 0 and taught.returncode == 0, alone.stderr + taught.stderr
    before, after = json.loads(alone.stdout), json.loads(taught.stdout)
    assert (before["unlabelled"], before["pseudo_labelled"], before["model"]) == (0, 0, "tfidf-svm")
    assert after["unlabelled"] == len(unlabelled) and 0 < after["pseudo_labelled"] < len(unlabelled)
    assert after["model"] == "tfidf-svm+self-trained"
    assert after["accuracy"] >= before["accuracy"] + 0.04, (before["accuracy"], after["accuracy"])
