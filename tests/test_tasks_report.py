"""Non-image recipes through `python -m tfsparse.pipeline --quick`, and `tfsparse.reporting.report --tasks`.

Real training, export (with the pruned Embedding stored sparse), host bench, report and
model card for the text and the RL recipe; then the one-row-per-task table the README's
"Beyond images" section is generated with, checked against the manifests it reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tfsparse.reporting.export_table import format_pct, format_size

ROOT = Path(__file__).resolve().parents[1]


def run(module: str, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"tfsparse.{module}", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def folders(quick_pipeline) -> dict[str, Path]:
    return {recipe: quick_pipeline(recipe).out for recipe in ("bbc_news", "frozenlake")}


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "export" / folder.name / "manifest.json").read_text())


def test_text_export_ships_the_pruned_embedding_sparse(folders):
    manifest = _manifest(folders["bbc_news"])
    dense, sparse = manifest["files"]
    (table,) = sparse["lookup_tables"]
    assert table["shape"] == [10000, 64] and table["zero_fraction"] > 0.85
    # The table is ~96% of the weights: storing it sparse is what makes the file small.
    assert sparse["bytes"] < dense["bytes"] / 4
    assert sparse["parity"]["top1_agreement"] == 1.0
    card = (folders["bbc_news"] / "export" / "bbc_news" / "README.md").read_text()
    assert "putInt(id)" in card and "pixel" not in card and "tokenizer" in card
    assert f"stored sparse: {format_size(table['dense_bytes'])} -> {format_size(table['sparse_bytes'])}" in card


def test_reports_use_the_tasks_own_metric(folders):
    manifest = _manifest(folders["frozenlake"])
    assert manifest["task_metric"] == "success_rate"
    rate = manifest["files"][1]["extra"]["success_rate"]
    text = (folders["frozenlake"] / "report.md").read_text()
    assert "| success rate |" in text.splitlines()[2]  # the table's header names the task's metric
    sparse_row = next(line for line in text.splitlines() if "| sparse |" in line)
    assert format_pct(rate) in sparse_row


def test_tasks_table_has_one_row_per_task_from_the_manifests(folders, tmp_path):
    out = tmp_path / "tasks.md"
    result = run("report", "--tasks", folders["bbc_news"], folders["frozenlake"], "--out", out, timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == result.stdout
    header, _, bbc, lake = result.stdout.splitlines()
    assert "metric (measured on)" in header and "sparse fp32" in header
    for row, folder in ((bbc, folders["bbc_news"]), (lake, folders["frozenlake"])):
        manifest = _manifest(folder)
        metric = manifest["task_metric"]
        dense, sparse = manifest["files"]
        scores = [f.get("score") if metric == "accuracy" else f["extra"][metric] for f in (dense, sparse)]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == f"`{folder.name}`" and cells[2] == f"{metric.replace('_', ' ')} (LiteRT fp32)"
        assert cells[3:6] == [format_pct(scores[0]), format_pct(scores[1]), format_pct(manifest["sparsity"]["overall"])]
        assert cells[6] == format_size(dense["bytes"]) and cells[7].startswith(format_size(sparse["bytes"]))


def test_tasks_out_needs_tasks(folders, tmp_path):
    result = run("report", folders["bbc_news"], "--out", tmp_path / "x.md", timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--tasks" in result.stderr
    assert not (tmp_path / "x.md").exists()
