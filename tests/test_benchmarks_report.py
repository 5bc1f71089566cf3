"""monai_gvae.benchmarks.report and .plots: tables, command lines, output folders, atomic files, the Dice plot."""

import json

import pytest
from PIL import Image

from monai_gvae.benchmarks.plots import PLOT_COLOURS, images_side_by_side, plot_dice_against_k
from monai_gvae.benchmarks.report import (
    command_line,
    cpu_model,
    markdown_table,
    prepare_output_dir,
    read_json,
    write_json,
    write_text,
)


def test_markdown_table_from_known_numbers():
    rows = [["classical", f"{0.7123:.3f} ± {0.0101:.3f}"], ["cond", f"{0.7345:.3f} ± {0.02:.3f}"]]
    assert markdown_table(["arm", "k = 5"], rows) == [
        "| arm | k = 5 |",
        "|---|---|",
        "| classical | 0.712 ± 0.010 |",
        "| cond | 0.735 ± 0.020 |",
    ]
    assert markdown_table(["a", "b", "c"], []) == ["| a | b | c |", "|---|---|---|"]
    assert markdown_table(["n"], [[3]]) == ["| n |", "|---|", "| 3 |"]
    with pytest.raises(ValueError, match="2 cells, the header 3"):
        markdown_table(["a", "b", "c"], [[1, 2]])


def test_command_line_quotes_arguments():
    assert command_line("examples/x.py", ["--quick", "--output-dir", "/tmp/a b"]) == \
        "python examples/x.py --quick --output-dir '/tmp/a b'"
    assert command_line("examples/x.py", ["--json", "a b"], quote=False) == "python examples/x.py --json a b"
    assert command_line("x.py", []) == "python x.py "
    assert isinstance(cpu_model(), str) and cpu_model()


def test_output_folder_and_files(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(out, overwrite=False)
    assert out.is_dir()
    write_text(out / "results.md", "table\n")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_text(out / "results.md", "other")
    write_text(out / "results.md", "other", overwrite=True)
    assert (out / "results.md").read_text() == "other"
    with pytest.raises(FileExistsError, match=r"already holds \['results.md'\]"):
        prepare_output_dir(out, overwrite=False)
    prepare_output_dir(out, overwrite=True)
    prepare_output_dir(out, overwrite=False, outputs=("tables.md",))  # only the named outputs count
    write_json(out / "results.json", {"a": [1, 2.5], "b": float("nan"), "p": out}, default=str)
    text = (out / "results.json").read_text()
    assert json.loads(text)["a"] == [1, 2.5] and "NaN" in text and str(out) in text
    assert read_json(out / "results.json")["a"] == [1, 2.5]
    with pytest.raises(FileNotFoundError, match="results of an earlier run"):
        read_json(out / "missing.json")
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md"]  # no temporary files left


def test_dice_plot(tmp_path):
    stats = {(5, "a"): (0.70, 0.02), (10, "a"): (0.75, 0.01), (5, "b"): (0.72, 0.03)}
    path = tmp_path / "dice.png"
    plot_dice_against_k(stats, [5, 10], {5: "k=5", 10: "k=10"}, ["a", "b"], {"a": "arm a", "b": "arm b"},
                        {"a": PLOT_COLOURS[0], "b": PLOT_COLOURS[1]}, "Dice", path, overwrite=False)
    with Image.open(path) as png:
        assert png.size == (820, 440)
        colours = {c for _, c in png.convert("RGB").getcolors(1 << 16)}
    assert PLOT_COLOURS[0] in colours and PLOT_COLOURS[1] in colours
    with pytest.raises(FileExistsError):
        plot_dice_against_k(stats, [5, 10], {5: "", 10: ""}, ["a"], {"a": ""}, {"a": PLOT_COLOURS[0]}, "", path, False)


def test_images_side_by_side_pastes_each_image_unchanged_in_order(tmp_path):
    """The side-by-side sample figure: every input at its own scale, left to right, nothing overwritten."""
    colours = [(255, 0, 0), (0, 0, 255)]
    paths = []
    for i, (colour, size) in enumerate(zip(colours, [(30, 20), (40, 50)])):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", size, colour).save(paths[-1])
    out = tmp_path / "both.png"
    images_side_by_side([("red", paths[0]), ("blue", paths[1])], out, overwrite=False, title="t", gap=10)
    with Image.open(out) as png:
        img = png.convert("RGB")
        head = 42  # title line + label line
        assert img.size == (30 + 40 + 3 * 10, 50 + head + 10)
        assert img.getpixel((10, head)) == colours[0] and img.getpixel((10 + 29, head + 19)) == colours[0]
        assert img.getpixel((10 + 30 + 10, head)) == colours[1] and img.getpixel((10 + 30 + 10 + 39, head + 49)) == colours[1]
        assert img.getpixel((10 + 30 + 5, head)) == (255, 255, 255)  # the gap between them
    with pytest.raises(FileExistsError):
        images_side_by_side([("red", paths[0])], out, overwrite=False)
    with pytest.raises(ValueError, match="at least one"):
        images_side_by_side([], tmp_path / "none.png", overwrite=False)
