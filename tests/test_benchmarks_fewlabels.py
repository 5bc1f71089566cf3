"""monai_gvae.benchmarks.fewlabels: synthetic pairs, one (k, seed) cell, tables, render and merge of runs."""

import json
import math
import random

import numpy as np
import pytest
import torch

from monai_gvae.benchmarks.fewlabels import (
    ARM_NAMES,
    CONDITIONAL_ARMS,
    FewLabelSettings,
    deformed_pairs,
    fewlabels_report,
    gvae_parts,
    interpolated_pairs,
    merge_runs,
    render_run,
    run_cell,
    worst_class_losses,
)
from monai_gvae.benchmarks.fewlabels.outputs import _legend_name
from monai_gvae.data import labelled_subset, load_brain_slices

SETTINGS = {"output_dir": "x", "overwrite": False, "ks": "5", "seeds": "0", "arms": "classical,cond",
            "eval_split": "test", "seg_iterations": 3, "batch_size": 4, "synthetic_fraction": 0.25, "num_synthetic": 8,
            "gvae_iterations": 3, "pretrain_iterations": 3, "adapt_iterations": 3, "gvae_batch": 4, "latent_size": 8,
            "base_channels": 4, "upsample": "nearest", "kl_weight": 0.02, "adv_weight": 0.001, "critic_quantile": 0.0,
            "min_dice": 0.7, "sigma_min_dice": 0.6, "threads": 1, "quick": True, "render": False, "merge": None}
# Dice per seed: classical, cond
DICE = {0: (0.70, 0.74), 1: (0.66, 0.69), 2: (0.68, 0.70)}


def fake_results(seeds, k=5, **settings):
    runs = []
    for seed in seeds:
        classical, cond = DICE[seed]
        runs.append({"k": k, "seed": seed, "arm": "classical", "dice": classical, "seg_seconds": 1.0, "num_synthetic": 0})
        runs.append({"k": k, "seed": seed, "arm": "cond", "dice": cond, "seg_seconds": 1.0, "num_synthetic": 8,
                     "gvae_seconds": 2.0, "acceptance": 0.5 + 0.1 * seed})
    return {"runs": runs, "n_train": 46, "command": f"python examples/fewlabels_benchmark.py --seeds {seeds}",
            "gvae_seconds": {"cond": 2.0}, "pretrain_seconds": None, "seg_seconds_mean": 1.0, "wall_seconds": 60.0,
            "hardware": "test", "settings": {**SETTINGS, "seeds": ",".join(map(str, seeds)), "ks": str(k), **settings}}


def write_run(folder, results):
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    return str(folder)


def test_report_renders_known_numbers_and_stores_paired_differences():
    results = fake_results([0, 1, 2])
    text = fewlabels_report(results)
    lines = text.splitlines()
    assert "| classical (flip + affine) | 0.680 ± 0.020 |" in lines
    assert "| classical + label-conditioned GVAE (k slices only) | 0.710 ± 0.026 |" in lines
    # differences 0.04, 0.03, 0.02: mean 0.030 ± 0.010, a gain outside the seed spread
    assert "| classical + label-conditioned GVAE (k slices only) | +0.030 ± 0.010 (gain outside spread) |" in lines
    assert results["paired"]["cond@5"] == pytest.approx({"mean": 0.03, "std": 0.01, "n": 3})
    assert "| classical + label-conditioned GVAE (k slices only) | 0.60 |" in lines  # acceptance 0.5, 0.6, 0.7
    assert "evaluated on split `test` (15 held-out slices" in text and "total wall time 1.0 min." in text
    one = fake_results([0])
    assert "| classical + label-conditioned GVAE (k slices only) | +0.040 ± 0.000 |" in fewlabels_report(one).splitlines()
    val = fake_results([0, 1], eval_split="val")
    assert "train slices outside the k: tuning only" in fewlabels_report(val)
    # sagittal slices are not flipped (no lateral axis in-plane): no table row or header line may say they were
    sagittal = fewlabels_report(fake_results([0, 1, 2], left_right_flip=False)).splitlines()
    assert "| classical (affine only: sagittal slices are not flipped) | 0.680 ± 0.020 |" in sagittal
    assert not any("flip + affine" in line for line in sagittal)
    assert "Adam 1e-3, " in text and "decayed to 0 (poly" not in text  # the constant schedule of earlier records
    assert "Adam 1e-3 decayed to 0 (poly, power 0.9), " in fewlabels_report(fake_results([0], seg_lr_schedule="poly"))
    with pytest.raises(ValueError, match="seg_lr_schedule must be one of"):
        FewLabelSettings.from_namespace({**SETTINGS, "seg_lr_schedule": "cosine"})


def test_plot_legend_names_a_segmentation_term_other_than_the_default():
    default, matched = {"seg_objective": "consistency"}, {"seg_objective": "gradient_matching"}
    assert _legend_name("cond_pseudo", default, None) == "+ cond. GVAE, pool pseudo-label maps"
    assert _legend_name("cond_pseudo", matched, 8) == "+ cond. GVAE, pool pseudo-label maps, gradient matching (8 seeds)"
    assert _legend_name("selftrain", matched, None) == "+ self-training control (no GVAE)"  # no generator: no term
    assert _legend_name("cond", {}, None) == "+ cond. GVAE (k slices)"  # runs recorded before the option existed


def test_worst_class_losses_show_the_seed_that_a_mean_hides():
    # cerebellum: +0.02 and +0.01 on seeds 0 and 1, -0.57 on seed 2 (the mean, -0.18, hides how bad seed 2 is);
    # cortex absent (NaN) on seed 2 for the arm: left out there
    nan = float("nan")
    runs = []
    for seed, (base, arm, cortex) in enumerate([(0.80, 0.82, 0.9), (0.70, 0.71, 0.8), (0.81, 0.24, nan)]):
        runs.append({"k": 20, "seed": seed, "arm": "classical", "dice": 0.8, "dice_cortex": 0.85,
                     "dice_cerebellum": base})
        runs.append({"k": 20, "seed": seed, "arm": "cond_pseudo", "dice": 0.7, "dice_cortex": cortex,
                     "dice_cerebellum": arm})
    worst = worst_class_losses(runs, "cond_pseudo", 20, ["dice_cortex", "dice_cerebellum"])
    assert worst["dice_cerebellum"][1] == 2 and worst["dice_cerebellum"][0] == pytest.approx(-0.57)
    assert worst["dice_cortex"] == (pytest.approx(-0.05), 1)
    assert worst_class_losses(runs, "cond_pseudo", 5, ["dice_cortex"]) == {}  # no run at this k
    results = fake_results([0])
    results.update(runs=runs, settings={**results["settings"], "ks": "20", "arms": "classical,cond_pseudo"},
                   table_format=2, data="test slices", n_val=18, n_test=30, gap=3)
    text = fewlabels_report(results)
    assert "| -5.0 (s1) / -57.0 (s2) |" in text
    assert results["worst_class_loss"]["cond_pseudo@20"]["dice_cerebellum"]["seed"] == 2


def test_merge_runs_split_by_seed(tmp_path):
    s0 = write_run(tmp_path / "s0", fake_results([0]))
    s1 = write_run(tmp_path / "s1", fake_results([1]))
    other = write_run(tmp_path / "other", fake_results([1], kl_weight=0.5))
    merged, text = merge_runs([s0, s1], str(tmp_path / "m"), False, "python examples/fewlabels_benchmark.py --merge")
    assert sorted((r["seed"], r["arm"]) for r in merged["runs"]) == [(0, "classical"), (0, "cond"), (1, "classical"),
                                                                     (1, "cond")]
    assert merged["settings"]["seeds"] == "0,1" and merged["paired"]["cond@5"]["n"] == 2
    assert merged["wall_seconds"] == 120.0 and merged["merged_from"] == [s0, s1]
    assert merged["command"].endswith(" ; python examples/fewlabels_benchmark.py --merge")
    assert "2 merged runs" in text and (tmp_path / "m" / "dice.png").is_file()
    assert json.loads((tmp_path / "m" / "results.json").read_text())["settings"]["seeds"] == "0,1"
    with pytest.raises(ValueError, match="appears twice"):
        merge_runs([s0, s0], str(tmp_path / "x"), False, "")
    with pytest.raises(ValueError, match="kl_weight"):
        merge_runs([s0, other], str(tmp_path / "x"), False, "")
    with pytest.raises(FileNotFoundError, match="results.json"):
        merge_runs([s0, str(tmp_path / "missing")], str(tmp_path / "x"), False, "")
    with pytest.raises(FileExistsError, match="overwrite"):
        merge_runs([s0, s1], str(tmp_path / "m"), False, "")
    # runs with other arms merge (a run of the arms of the goal on more seeds); the table says which seeds each has
    only_classical = fake_results([2], arms="classical")
    only_classical["runs"] = [r for r in only_classical["runs"] if r["arm"] == "classical"]
    s2 = write_run(tmp_path / "s2", only_classical)
    merged3, text3 = merge_runs([s0, s1, s2], str(tmp_path / "m3"), False, "merge")
    assert merged3["settings"]["arms"] == "classical,cond" and merged3["paired"]["cond@5"]["n"] == 2
    assert "classical: 3 seeds (0,1,2); + cond. GVAE (k slices): 2 seeds (0,1)" in text3
    assert "| classical (flip + affine) (3 seeds) | 0.680 ± 0.020 |" in text3.splitlines()
    assert "Seeds per arm differ" not in text and "seeds) |" not in text
    # a control run on the same machine (no GVAE arm) merges with a GVAE run whose GVAE settings differ; the
    # baseline both ran (same Dice: deterministic) is kept once; the merged settings are the GVAE run's
    control = fake_results([0], kl_weight=0.5, seg_objective="consistency", arms="classical,selftrain")
    control["runs"] = [control["runs"][0], {**control["runs"][0], "arm": "selftrain", "dice": 0.72}]
    c0 = write_run(tmp_path / "c0", control)
    merged4, text4 = merge_runs([c0, s0], str(tmp_path / "m4"), False, "merge")
    assert sorted(r["arm"] for r in merged4["runs"]) == ["classical", "cond", "selftrain"]
    assert merged4["settings"]["kl_weight"] == 0.02 and merged4["merged_from"] == [s0, c0]
    assert merged4["paired"]["cond@5"]["n"] == 1
    control["runs"][0] = {**control["runs"][0], "dice": 0.71}  # the same baseline with another Dice: refused
    with pytest.raises(ValueError, match="appears twice .* with another Dice"):
        merge_runs([write_run(tmp_path / "c1", control), s0], str(tmp_path / "x"), False, "")
    # a run from before pseudo_keep existed (no such setting) merges with one stating its default, not another value
    stated = write_run(tmp_path / "stated", fake_results([1], pseudo_keep=1.0))
    assert merge_runs([s0, stated], str(tmp_path / "m5"), False, "")[0]["paired"]["cond@5"]["n"] == 2
    with pytest.raises(ValueError, match="pseudo_keep"):
        merge_runs([s0, write_run(tmp_path / "half", fake_results([1], pseudo_keep=0.5))], str(tmp_path / "x"), False, "")
    # likewise split_layout: a paired-split run never merges with one of the alternate split
    assert merge_runs([s0, write_run(tmp_path / "alt", fake_results([1], split_layout="alternate"))],
                      str(tmp_path / "m6"), False, "")[0]["paired"]["cond@5"]["n"] == 2
    with pytest.raises(ValueError, match="split_layout"):
        merge_runs([s0, write_run(tmp_path / "pair", fake_results([1], split_layout="paired"))], str(tmp_path / "x"),
                   False, "")
    # a run from before k_unit existed counted k in slices: it merges with a slice run, never with a scan run
    assert merge_runs([s0, write_run(tmp_path / "slices", fake_results([1], k_unit="slice"))], str(tmp_path / "m9"),
                      False, "")[0]["paired"]["cond@5"]["n"] == 2
    with pytest.raises(ValueError, match="k_unit"):
        merge_runs([s0, write_run(tmp_path / "scans", fake_results([1], k_unit="volume"))], str(tmp_path / "x"),
                   False, "")
    # runs made with other library versions do not pair (other last digits); runs from before versions were written
    # merge with either
    v1, v2 = ({**fake_results([1]), "versions": {"MONAI": m}} for m in ("1.5.0", "1.6.1"))
    assert merge_runs([s0, write_run(tmp_path / "v1", v1)], str(tmp_path / "m10"), False, "")[0]["paired"]["cond@5"]["n"] == 2
    with pytest.raises(ValueError, match="other library versions"):
        merge_runs([write_run(tmp_path / "v0", {**fake_results([0]), "versions": {"MONAI": "1.5.0"}}),
                    write_run(tmp_path / "v2", v2)], str(tmp_path / "x"), False, "")
    # runs split by k (a k added later, on the same seeds) merge into one table with a column per k
    k20 = write_run(tmp_path / "k20", fake_results([0, 1], k=20))
    merged7, text7 = merge_runs([s0, s1, k20], str(tmp_path / "m7"), False, "")
    assert merged7["settings"]["ks"] == "5,20" and merged7["paired"]["cond@20"]["n"] == 2
    assert merged7["paired"]["cond@5"]["n"] == 2 and "| k = 20 |" in text7
    with pytest.raises(ValueError, match="appears twice"):
        merge_runs([k20, write_run(tmp_path / "k20b", fake_results([1], k=20))], str(tmp_path / "x"), False, "")
    # an arm not run at one k: its cells there say "-", not NaN
    classical_k20 = fake_results([0], k=20, arms="classical")
    classical_k20["runs"] = [r for r in classical_k20["runs"] if r["arm"] == "classical"]
    merged8, text8 = merge_runs([s0, write_run(tmp_path / "k20c", classical_k20)], str(tmp_path / "m8"), False, "")
    assert merged8["paired"]["cond@20"]["n"] == 0 and "nan" not in text8
    assert "| classical + label-conditioned GVAE (k slices only) | 0.740 ± 0.000 | - |" in text8.splitlines()
    # render: the same table again from the merged results.json
    (tmp_path / "m" / "results.md").unlink()
    _, again = render_run(str(tmp_path / "m"))
    assert again == text == (tmp_path / "m" / "results.md").read_text()


def test_synthetic_pairs_are_seeded_and_keep_labels_valid():
    items = load_brain_slices("train")[:5]
    a, b = deformed_pairs(items, 3, seed=7), deformed_pairs(items, 3, seed=7)
    assert len(a) == 3 and all(torch.equal(x["image"], y["image"]) for x, y in zip(a, b))
    assert not torch.equal(a[0]["image"], deformed_pairs(items, 3, seed=8)[0]["image"])
    for pair in a + interpolated_pairs(items, 3, seed=7):
        assert pair["image"].shape == (1, 64, 64) and pair["label"].dtype == torch.int64
        assert set(pair["label"].unique().tolist()) <= {0, 1, 2, 3}


def test_settings_and_parts():
    s = FewLabelSettings.from_namespace(SETTINGS)
    assert s.latent_size == 8 and s.upsample == "nearest" and s.seg_iterations == 3
    assert FewLabelSettings().kl_weight == 2e-2  # the defaults chosen on the validation split
    gvae, critic = gvae_parts(s, "conditional", seed=0)
    again, _ = gvae_parts(s, "conditional", seed=0)
    assert gvae.latent_size == 8 and all(torch.equal(x, y) for x, y in zip(gvae.parameters(), again.parameters()))
    with pytest.raises(ValueError, match="kind"):
        gvae_parts(s, "both", seed=0)


def test_run_cell_records_every_arm(tmp_path):
    s = FewLabelSettings.from_namespace(SETTINGS)
    train = load_brain_slices("train")
    messages = []
    runs = run_cell(5, 0, train, None, ["classical", "elastic"], s, log=messages.append, samples_dir=tmp_path)
    assert [r["arm"] for r in runs] == ["classical", "elastic"] and len(messages) == 2
    assert runs[0]["num_synthetic"] == 0 and runs[1]["num_synthetic"] == 8
    assert all(0.0 <= r["dice"] <= 1.0 and r["k"] == 5 and r["seed"] == 0 for r in runs)
    assert (tmp_path / "samples_k5_elastic.png").is_file() and not (tmp_path / "samples_k5_classical.png").exists()
    with pytest.raises(ValueError, match="unknown arm"):
        run_cell(5, 0, train, None, ["mixup"], s)
    with pytest.raises(ValueError, match="pool pre-training"):
        run_cell(5, 0, train, None, ["classical", "cond_pool"], s)
    assert set(ARM_NAMES) >= {"classical", "cond_pool"}


def test_selftrain_adds_only_pool_images_with_pseudo_labels():
    from monai_gvae.benchmarks.fewlabels import pseudo_label_quality, pseudo_labelled_pool

    train = load_brain_slices("train")
    items = train[:5]
    pool = train[5:12]

    class Threshold(torch.nn.Module):  # a "segmenter": class 1 where the image is bright
        def forward(self, x):
            return torch.cat([0.5 - x, x - 0.5, x * 0 - 9, x * 0 - 9], 1)

    pairs = pseudo_labelled_pool(Threshold(), pool)
    assert len(pairs) == len(pool) and all(p["pseudo_label"] for p in pairs)
    for pair, item in zip(pairs, pool):
        assert torch.equal(pair["image"], torch.as_tensor(item["image"]))  # the pool image itself
        assert pair["slice_index"] == item["slice_index"] and pair["slice_index"] not in {i["slice_index"] for i in items}
        assert torch.equal(pair["label"], (torch.as_tensor(item["image"]) > 0.5).long())  # the prediction, not the truth
    # keep: the slices whose predicted foreground is the most certain (a slice without foreground: least), in
    # the pool's order; the Threshold segmenter is more certain the brighter a constant image is above 0.5
    constant = [{"image": torch.full((1, 8, 8), v), "slice_index": i} for i, v in enumerate((0.6, 0.9, 0.2, 0.75))]
    assert [p["slice_index"] for p in pseudo_labelled_pool(Threshold(), constant, keep=0.5)] == [1, 3]
    assert [p["slice_index"] for p in pseudo_labelled_pool(Threshold(), constant, keep=0.75)] == [0, 1, 3]
    assert len(pseudo_labelled_pool(Threshold(), pool, keep=0.01)) == 1
    # the diagnostic reads the hidden labels: Dice of each pseudo-label against them, the same ranking
    for item, label in zip(constant, (1, 1, 0, 2)):
        item["label"] = torch.full((1, 8, 8), label)
    rows = pseudo_label_quality(Threshold(), constant, 0.5, num_classes=4)
    assert [r["kept"] for r in rows] == [False, True, False, True]
    assert [r["dice"] for r in rows[:2]] == [1.0, 1.0] and math.isnan(rows[2]["dice"]) and rows[3]["dice"] == 0.0
    assert rows[3]["pixels"] == [0, 64, 0] and rows[1]["confidence"] > rows[3]["confidence"] > rows[0]["confidence"]
    with pytest.raises(ValueError, match=r"keep .* must be in \(0, 1\], got 0"):
        pseudo_labelled_pool(Threshold(), pool, keep=0)
    with pytest.raises(ValueError, match="pseudo_keep"):
        FewLabelSettings(pseudo_keep=1.5)
    # in a cell, the self-training arm trains on exactly the pool (the train slices outside the k) with pseudo-labels
    s = FewLabelSettings.from_namespace(SETTINGS)
    # enough iterations that batches mix real and pseudo-labelled items (they must collate)
    mixed = FewLabelSettings.from_namespace({**SETTINGS, "seg_iterations": 6, "synthetic_fraction": 0.5})
    runs = run_cell(5, 0, train, load_brain_slices("val"), ["classical", "selftrain"], mixed, log=lambda m: None)
    assert runs[1]["arm"] == "selftrain" and runs[1]["num_synthetic"] == len(train) - 5
    with pytest.raises(ValueError, match="put 'classical' first"):
        run_cell(5, 0, train, None, ["selftrain", "classical"], s)
    half = FewLabelSettings.from_namespace({**SETTINGS, "seg_iterations": 1, "pseudo_keep": 0.5})
    runs = run_cell(5, 0, train, load_brain_slices("val"), ["classical", "selftrain"], half, log=lambda m: None)
    assert runs[1]["num_synthetic"] == round(0.5 * (len(train) - 5))


def test_cond_pseudo_renders_pool_pseudo_label_maps_with_segmentation_consistency(tmp_path):
    s = FewLabelSettings.from_namespace({**SETTINGS, "seg_weight": 0.5, "critic_quantile": -1.0,
                                         "condition_mode": "spade", "critic_head": "patch"})
    train = load_brain_slices("train")
    runs = run_cell(5, 0, train, load_brain_slices("val"), ["classical", "cond_pseudo"], s, log=lambda m: None,
                    samples_dir=tmp_path)
    assert runs[1]["num_synthetic"] == s.num_synthetic and runs[1]["acceptance"] is None  # no filter
    assert (tmp_path / "samples_k5_cond_pseudo.png").is_file()
    assert set(runs[1]) >= {"dice_cortex", "dice_deep_grey_matter", "dice_cerebellum", "gvae_seconds"}
    with pytest.raises(ValueError, match="schedule"):
        FewLabelSettings(schedule="anneal")
    with pytest.raises(ValueError, match="finetune_iterations"):
        FewLabelSettings(schedule="finetune", finetune_iterations=300, seg_iterations=300)


def test_selftrain_cond_adds_the_pool_images_and_cond_pseudo_pairs_each_at_the_synthetic_share(monkeypatch):
    from monai_gvae.benchmarks.fewlabels import cell  # spies go where run_cell looks its helpers up

    calls = {}
    train_segmenter = cell.train_segmenter

    def spy(items, **kwargs):  # the synthetic items and share each arm's segmenter trains on
        calls[len(calls)] = kwargs
        return train_segmenter(items, **kwargs)

    monkeypatch.setattr(cell, "train_segmenter", spy)
    s = FewLabelSettings.from_namespace({**SETTINGS, "critic_quantile": -1.0, "pseudo_keep": 0.5, "num_synthetic": 40,
                                         "seg_iterations": 1})
    train = load_brain_slices("train")
    runs = run_cell(5, 0, train, load_brain_slices("val"), ["classical", "cond_pseudo", "selftrain_cond"], s,
                    log=lambda m: None)
    assert [r["arm"] for r in runs] == ["classical", "cond_pseudo", "selftrain_cond"]
    gvae_pairs, both = calls[1]["synthetic"], calls[2]["synthetic"]
    assert calls[1]["synthetic_fraction"] == 0.25 and calls[2]["synthetic_fraction"] == 0.5
    assert len(both) == 2 * len(gvae_pairs) == 2 * s.num_synthetic == runs[2]["num_synthetic"]
    # the second half: cond_pseudo's pairs themselves (one GVAE, one synthesis); the first: pool images, cycled
    assert all(a is b for a, b in zip(both[len(gvae_pairs):], gvae_pairs))
    pool = {i["slice_index"] for i in train[5:]} - {i["slice_index"] for i in labelled_subset(train, 5, 0)}
    first = both[:len(gvae_pairs)]
    assert all(p["pseudo_label"] and p["slice_index"] in pool for p in first)
    assert len({p["slice_index"] for p in first}) == round(0.5 * (len(train) - 5))  # the confident half, every one
    assert runs[2]["gvae_seconds"] == runs[1]["gvae_seconds"]
    # without cond_pseudo in the run, the arm renders the same pairs itself
    calls.clear()
    alone = run_cell(5, 0, train, load_brain_slices("val"), ["classical", "selftrain_cond"], s, log=lambda m: None)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(calls[1]["synthetic"], both))
    assert alone[1]["dice"] == runs[2]["dice"]
    with pytest.raises(ValueError, match="selftrain_cond mixes two synthetic shares"):
        run_cell(5, 0, train, None, ["classical", "selftrain_cond"],
                 FewLabelSettings.from_namespace({**SETTINGS, "synthetic_fraction": 0.5}))


def test_cond_pseudo_post_renders_each_pair_from_the_posterior_of_its_own_image():
    from monai_gvae.benchmarks.fewlabels import conditional_synthesis, packer, train_gvae
    from monai_gvae.transforms import encode_pairs, synthesize_for_labels

    s = FewLabelSettings.from_namespace({**SETTINGS, "critic_quantile": -1.0, "num_synthetic": 4, "kl_weight": 1e-4})
    items = load_brain_slices("train")[:4]
    gvae, critic = gvae_parts(s, "conditional", 0)
    train_gvae(gvae, critic, items, packer(True, augment=False), 2, s, 0)
    pairs = deformed_pairs(items, 4, seed=3)
    dark = [{"image": p["image"] * 0.2, "label": p["label"]} for p in pairs]  # other images, the same maps

    def render(source, posterior):
        out, _ = conditional_synthesis(gvae, critic, items, s, 5, lambda _i, n, _s: source[:n], posterior=posterior)
        return torch.stack([p["image"] for p in out]), torch.stack([p["label"] for p in out])

    prior, labels = render(pairs, False)
    post, post_labels = render(pairs, True)
    assert torch.equal(labels, post_labels) and not torch.allclose(prior, post)  # the same maps, other latents
    assert torch.allclose(prior, render(dark, False)[0])  # a prior render ignores the pair's image
    assert not torch.allclose(post, render(dark, True)[0])  # a posterior render is of the pair's image
    # the latent is a draw from that image's posterior: mu + sigma * eps, eps from the synthesis seed
    mu, logvar = encode_pairs(gvae, torch.stack([p["image"] for p in pairs]) * 2 - 1, labels)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5))
    expected = synthesize_for_labels(gvae, labels, latents=mu + (0.5 * logvar).exp() * eps)
    assert torch.allclose(post, (expected + 1) / 2, atol=1e-6)


def test_cond_pseudo_checked_keeps_the_candidates_that_pass_the_per_class_check():
    from monai_gvae.benchmarks.fewlabels import conditional_synthesis, packer, train_gvae

    items = load_brain_slices("train")[10:14]
    maps = deformed_pairs(items, 4, seed=3)
    # every map holds the three classes: losing one leaves a mean Dice of 2/3, above the threshold; only the
    # per-class check rejects it
    assert all(set(p["label"].unique().tolist()) == {0, 1, 2, 3} for p in maps)
    s = FewLabelSettings.from_namespace({**SETTINGS, "critic_quantile": -1.0, "num_synthetic": 16,
                                         "render_min_dice": 0.5})
    gvae, critic = gvae_parts(s, "conditional", 0)
    train_gvae(gvae, critic, items, packer(True, augment=False), 2, s, 0)
    # the unchecked stream: four rounds of the same four maps, rendered with the generator's next latents
    stream, acceptance = conditional_synthesis(gvae, critic, items, s, 5, lambda _i, n, _s: maps)
    assert len(stream) == 16 and acceptance is None
    # a planted segmenter: it finds every class in candidates 0, 3, 6, ... and loses class 1 in the others
    predictions = {}
    for j, pair in enumerate(stream):
        found = pair["label"].clone()
        if j % 3:
            found[found == 1] = 0
        predictions[pair["image"].numpy().tobytes()] = found

    def segmenter(images):
        return torch.stack([predictions[image.numpy().tobytes()] for image in images])

    checked = FewLabelSettings.from_namespace({**SETTINGS, "critic_quantile": -1.0, "num_synthetic": 4,
                                               "render_min_dice": 0.5})
    kept, acceptance = conditional_synthesis(gvae, critic, items, checked, 5, lambda _i, n, _s: maps,
                                             segmenter=segmenter)
    assert [p["image"].numpy().tobytes() for p in kept] == [stream[j]["image"].numpy().tobytes() for j in (0, 3, 6, 9)]
    assert acceptance == pytest.approx(4 / 12)  # three rounds of four candidates were needed
    with pytest.raises(ValueError, match="render_min_dice"):
        FewLabelSettings(render_min_dice=1.5)


def test_run_cell_records_the_checked_arm_beside_cond_pseudo():
    s = FewLabelSettings.from_namespace({**SETTINGS, "critic_quantile": -1.0, "render_min_dice": 0.0})
    train = load_brain_slices("train")
    runs = run_cell(5, 0, train, load_brain_slices("val"), ["classical", "cond_pseudo", "cond_pseudo_checked"], s,
                    log=lambda m: None)
    assert [r["arm"] for r in runs] == ["classical", "cond_pseudo", "cond_pseudo_checked"]
    # threshold 0 keeps every candidate: the same pairs as cond_pseudo's, so the same segmenter
    assert runs[2]["acceptance"] == 1.0 and runs[2]["dice"] == runs[1]["dice"]
    assert runs[2]["gvae_seconds"] == runs[1]["gvae_seconds"]  # one GVAE for both
    assert "cond_pseudo_checked" in CONDITIONAL_ARMS and "cond_pseudo_checked" in ARM_NAMES


def test_label_maps_for_each_conditional_arm_names_its_source():
    from monai_gvae.benchmarks.fewlabels import LABEL_MAP_SOURCES, label_maps_for

    items = load_brain_slices("train")[:6]
    pseudo = [{"image": i["image"], "label": torch.as_tensor(i["label"]).long().clamp(max=2), "pseudo_label": True}
              for i in load_brain_slices("train")[10:16]]  # other slices, other maps
    k_labels = [torch.as_tensor(i["label"]).long() for i in items]

    def labels(arm):
        return [p["label"] for p in label_maps_for(arm, pseudo, 4)(items, 5, 3)]

    # interpolated pool maps: shape-based interpolations of two pseudo-label maps, never of the k maps
    interp = labels("cond_pseudo_interp")
    assert all(torch.equal(a, b["label"]) for a, b in zip(interp, interpolated_pairs(pseudo, 5, 3, 4)))
    assert all(int(m.max()) <= 2 for m in interp)  # the clamped pseudo maps' classes only
    assert any(int(m.max()) == 3 for m in labels("cond_interp"))  # the k maps hold class 3
    assert all(torch.equal(a, b) for a, b in zip(labels("cond_pseudo"), labels("selftrain_cond")))
    assert not any(torch.equal(a, b) for a in labels("cond") for b in k_labels)  # deformed copies
    assert set(LABEL_MAP_SOURCES) == set(CONDITIONAL_ARMS)
    with pytest.raises(ValueError, match="'selftrain' is not a conditional arm"):
        label_maps_for("selftrain", pseudo)
    with pytest.raises(ValueError, match="pass them"):
        label_maps_for("cond_pseudo_interp", None)


def test_grad_weight_reaches_the_gvae_objective():
    from monai_gvae.benchmarks.fewlabels import gvae_parts, packer, train_gvae

    items = load_brain_slices("train")[:4]
    weights = []
    for grad_weight in (0.0, 1.0, 0.0):
        s = FewLabelSettings.from_namespace({**SETTINGS, "grad_weight": grad_weight, "gvae_iterations": 2})
        gvae, critic = gvae_parts(s, "conditional", 0)
        train_gvae(gvae, critic, items, packer(True, augment=False), 2, s, 0)
        weights.append(torch.cat([p.detach().flatten() for p in gvae.parameters()]))
    assert torch.equal(weights[0], weights[2]) and not torch.equal(weights[0], weights[1])  # only the term differs
    with pytest.raises(ValueError, match="grad_weight"):
        FewLabelSettings(grad_weight=-0.5)


def test_train_gvae_checkpoints_see_the_training_midway_and_leave_it_unchanged():
    """A budget curve from one training: ``on_checkpoint`` runs after the named iterations, with the networks in eval
    mode, and whatever random numbers it draws, the training ends with the weights it has without it."""
    from monai_gvae.benchmarks.fewlabels import gvae_parts, packer, train_gvae

    items = load_brain_slices("train")[:4]
    s = FewLabelSettings.from_namespace({**SETTINGS, "gvae_iterations": 4})
    seen = []

    def checkpoint(iteration):
        seen.append((iteration, gvae.training, torch.cat([p.detach().flatten() for p in gvae.parameters()])))
        torch.randn(100), np.random.rand(3), random.random()  # e.g. rendering from the prior

    weights = []
    for callback in (None, checkpoint):
        gvae, critic = gvae_parts(s, "conditional", 0)
        train_gvae(gvae, critic, items, packer(True, augment=False), 4, s, 0, checkpoints=(1, 3),
                   on_checkpoint=callback)
        weights.append(torch.cat([p.detach().flatten() for p in gvae.parameters()]))
    assert torch.equal(weights[0], weights[1])
    assert [(i, training) for i, training, _ in seen] == [(1, False), (3, False)]
    assert not torch.equal(seen[0][2], seen[1][2]) and not torch.equal(seen[1][2], weights[1])  # midway weights


def test_interval_report_and_selftrain_comparison():
    results = fake_results([0, 1, 2])
    results.update(table_format=2, data="test slices", n_val=18, n_test=30, gap=3)
    results["settings"]["eval_split"] = "val"
    for r in results["runs"]:
        r["dice_cortex"] = r["dice"]
    text = fewlabels_report(results)
    # differences 0.04, 0.03, 0.02: t interval 0.030 ± 4.303 * 0.01 / sqrt(3)
    assert "| classical + label-conditioned GVAE (k slices only) | +0.030 [+0.005, +0.055] **gain** |" in text
    assert results["paired"]["cond@5"]["verdict"] == "gain"
    assert "Scored on `val` (val: for choosing settings)" in text and "train 46, val 18, test 30" in text
    assert "pseudo-label arms" not in text  # the whole pool: nothing to say
    results["settings"]["pseudo_keep"] = 0.5
    assert "pseudo-label arms: the 50% of the pool the classical segmenter is most confident about" in fewlabels_report(
        results)
    del results["settings"]["pseudo_keep"]
    assert "val and test slabs alternate (different levels)" in text  # split_layout absent: the recorded default
    results["settings"]["split_layout"] = "paired"
    assert "a val slab beside each test slab (the same levels)" in fewlabels_report(results)
    del results["settings"]["split_layout"]
    assert "Dice per class (mean over seeds; cortex)" in text
    # per class paired differences in points: cortex as the mean Dice (+3.0); a NaN class is left out of its mean
    assert "| classical + label-conditioned GVAE (k slices only) | +3.0 |" in text
    assert results["paired_per_class"]["cond@5"] == {"dice_cortex": pytest.approx(0.03)}
    for r in results["runs"]:
        r["dice_cerebellum"] = float("nan") if r["seed"] == 0 else r["dice"] + (0.1 if r["arm"] == "cond" else 0.0)
    text = fewlabels_report(results)
    assert "| classical + label-conditioned GVAE (k slices only) | +3.0 / +12.5 |" in text  # seeds 1, 2: +13, +12


def test_cotraining_pairs_are_the_k_pairs_repeated_to_half_and_the_pseudo_labelled_pool():
    from monai_gvae.benchmarks.fewlabels import cotraining_pairs

    items = load_brain_slices("train")[:5]
    pseudo = [{"image": torch.zeros(1, 64, 64), "label": torch.full((1, 64, 64), j % 4), "slice_index": 100 + j,
               "pseudo_label": True} for j in range(41)]
    data = cotraining_pairs(items, pseudo)
    assert len(data) == 5 * 8 + 41  # round(41 / 5) = 8 copies of the k pairs
    assert all(not d["pseudo_label"] and torch.equal(torch.as_tensor(d["image"]), torch.as_tensor(i["image"]))
               for d, i in zip(data[:40], items * 8))
    assert all(d["pseudo_label"] and torch.equal(d["label"], p["label"]) for d, p in zip(data[40:], pseudo))
    assert len(cotraining_pairs(items, pseudo[:2])) == 5 + 2  # never fewer than one copy of the k pairs
    with pytest.raises(ValueError, match="labelled and pseudo-labelled"):
        cotraining_pairs(items, [])


def test_run_cell_trains_the_cotrained_arms_gvae_on_the_k_pairs_and_the_pseudo_labelled_pool(monkeypatch):
    from monai_gvae.benchmarks.fewlabels import cell  # spies go where run_cell looks its helpers up

    trained = {}
    original = cell._train_conditional

    def spy(items, source, *args, **kwargs):
        trained[source] = list(items)
        return original(items, source, *args, **kwargs)

    monkeypatch.setattr(cell, "_train_conditional", spy)
    s = FewLabelSettings.from_namespace({**SETTINGS, "critic_quantile": -1.0})
    train = load_brain_slices("train")
    runs = run_cell(5, 0, train, load_brain_slices("val"), ["classical", "cond_pseudo", "cond_pseudo_cotrained"], s,
                    log=lambda m: None)
    assert [r["arm"] for r in runs] == ["classical", "cond_pseudo", "cond_pseudo_cotrained"]
    k_slices = {i["slice_index"] for i in labelled_subset(train, 5, 0)}
    assert {i["slice_index"] for i in trained["k"]} == k_slices and len(trained["k"]) == 5  # cond_pseudo: k only
    pool = [i for i in trained["cotrained"] if i["pseudo_label"]]
    real = [i for i in trained["cotrained"] if not i["pseudo_label"]]

    def index_of(image):  # which train slice an image is
        return next(t["slice_index"] for t in train if torch.equal(torch.as_tensor(t["image"]), torch.as_tensor(image)))

    assert sorted(index_of(i["image"]) for i in pool) == sorted({i["slice_index"] for i in train} - k_slices)
    assert {index_of(i["image"]) for i in real} == k_slices and len(real) == 5 * round(len(pool) / 5)
    assert "cond_pseudo_cotrained" in cell.PSEUDO_LABEL_ARMS and "cond_pseudo_cotrained" in ARM_NAMES


def test_atlas_labelled_pool_registers_the_k_maps_to_the_pool_and_reads_no_pool_label():
    from monai_gvae.benchmarks.fewlabels import atlas_labelled_pool
    from monai_gvae.transforms import class_dice

    train = load_brain_slices("train")
    items = [train[5], train[35]]  # slices 43 and 119
    hidden = [train[9], train[39], train[34]]  # slices 47, 139 and 118
    pool = [{"image": i["image"], "slice_index": i["slice_index"]} for i in hidden]  # no label to read
    pairs = atlas_labelled_pool(items, pool)
    assert [p["slice_index"] for p in pairs] == [i["slice_index"] for i in hidden]
    assert all(p["pseudo_label"] and p["label"].shape == (1, 64, 64) and p["label"].dtype == torch.int64
               for p in pairs)
    assert all(torch.equal(p["image"], torch.as_tensor(i["image"]).float()) for p, i in zip(pairs, hidden))

    def dice(label, item):
        return float(class_dice(torch.as_tensor(label)[None], torch.as_tensor(item["label"])[None], 4,
                                min_pixels=1).nanmean())

    # each pool slice gets the nearest labelled anatomy, registered: better than that slice's map as it is (20 mm
    # up the head shrinks: 0.47 -> 0.87)
    assert dice(pairs[1]["label"], hidden[1]) > max(0.8, dice(items[1]["label"], hidden[1]) + 0.2)
    only_nearest = atlas_labelled_pool(items[:1], pool[:1])[0]  # 4 mm up, registered beats the map as it is
    assert dice(only_nearest["label"], hidden[0]) > dice(items[0]["label"], hidden[0]) + 0.05
    assert dice(pairs[2]["label"], hidden[2]) > 0.85
    # keep ranks by the fit (the correlation of the registered atlas image): the best-fitting share stays
    half = atlas_labelled_pool(items, pool, keep=0.5)
    fits = sorted((p["fit"] for p in pairs), reverse=True)
    assert len(half) == 2 and [p["fit"] for p in half] == [f for f in (p["fit"] for p in pairs) if f >= fits[1]]
    assert all(torch.equal(a["label"], b["label"]) for a, b in zip(atlas_labelled_pool(items, pool), pairs))
    with pytest.raises(ValueError, match="keep"):
        atlas_labelled_pool(items, pool, keep=0.0)
    # registered synthesis: the warped atlas image with its warped label, an exact pair in the pool slice's shape
    from monai_gvae.benchmarks.fewlabels import registered_synthesis_pairs

    synthetic = registered_synthesis_pairs(pairs)
    assert [p["slice_index"] for p in synthetic] == [p["slice_index"] for p in pairs]
    assert all(s["label"] is p["label"] and s["image"] is p["atlas_image"] and s["image"].shape == (1, 64, 64)
               for s, p in zip(synthetic, pairs))
    for s, item, hidden_item in zip(synthetic, pool, hidden):
        pool_image = torch.as_tensor(item["image"]).float()
        assert not torch.equal(s["image"], pool_image)  # the atlas's texture, not the pool image's
        # moved onto the pool slice: nearer it than the atlases as they are
        assert (s["image"] - pool_image).abs().mean() < min((torch.as_tensor(a["image"]) - pool_image).abs().mean()
                                                            for a in items)
    with pytest.raises(KeyError, match="atlas_image"):
        registered_synthesis_pairs([{"image": pool[0]["image"], "label": pairs[0]["label"], "fit": 1.0}])


def test_run_cell_atlas_arms_train_on_the_registered_pool_and_share_cond_pseudos_gvae(monkeypatch):
    from monai_gvae.benchmarks.fewlabels import cell  # spies go where run_cell looks its helpers up

    calls, maps, labelled = {}, {}, {}
    train_segmenter, label_maps_for, atlas_labelled_pool = (cell.train_segmenter, cell.label_maps_for,
                                                            cell.atlas_labelled_pool)

    def segmenter_spy(items, **kwargs):
        calls[len(calls)] = kwargs
        return train_segmenter(items, **kwargs)

    def maps_spy(arm, pseudo, *args):
        maps[arm] = pseudo
        return label_maps_for(arm, pseudo, *args)

    def atlas_spy(items, pool, keep=1.0, per_volume=False):
        labelled["items"], labelled["pool"] = list(items), list(pool)
        labelled["pairs"] = atlas_labelled_pool(items, pool, keep, per_volume=per_volume)
        return labelled["pairs"]

    monkeypatch.setattr(cell, "train_segmenter", segmenter_spy)
    monkeypatch.setattr(cell, "label_maps_for", maps_spy)
    monkeypatch.setattr(cell, "atlas_labelled_pool", atlas_spy)
    s = FewLabelSettings.from_namespace({**SETTINGS, "critic_quantile": -1.0, "seg_iterations": 1})
    train = load_brain_slices("train")[:9]  # k = 5 and a pool of 4: few registrations
    arms = ["classical", "cond_pseudo", "selftrain_atlas", "cond_pseudo_atlas", "atlas_synth"]
    runs = run_cell(5, 0, train, load_brain_slices("val"), arms, s, log=lambda m: None)
    assert [r["arm"] for r in runs] == arms
    k_slices = {i["slice_index"] for i in labelled_subset(train, 5, 0)}
    assert {i["slice_index"] for i in labelled["items"]} == k_slices  # the atlases: the k labelled slices
    assert {i["slice_index"] for i in labelled["pool"]} == {i["slice_index"] for i in train} - k_slices
    def same(pairs, expected):  # the same pair objects, in order
        return len(pairs) == len(expected) and all(p is e for p, e in zip(pairs, expected))

    assert same(calls[2]["synthetic"], labelled["pairs"])  # selftrain_atlas: the pool images with registered maps
    assert maps["cond_pseudo_atlas"] is calls[2]["synthetic"] and not same(maps["cond_pseudo"], labelled["pairs"])
    assert runs[3]["gvae_seconds"] == runs[1]["gvae_seconds"]  # one GVAE of the k slices for both
    assert runs[2]["label_seconds"] == runs[3]["label_seconds"] == runs[4]["label_seconds"] >= 0  # registered once
    # atlas_synth: the same registered maps, each with its atlas's warped image instead of the pool image
    assert [p["label"] for p in calls[4]["synthetic"]] == [p["label"] for p in labelled["pairs"]]
    assert all(s["image"] is p["atlas_image"] and s["image"] is not p["image"]
               for s, p in zip(calls[4]["synthetic"], labelled["pairs"]))
    assert set(cell.ATLAS_ARMS) == {"selftrain_atlas", "cond_pseudo_atlas", "atlas_synth"} <= set(ARM_NAMES)


class _ConfidentOn(torch.nn.Module):
    """A stand-in segmenter: logits of a fixed class map, sure (margin ``sure``) inside ``region`` and unsure
    (two classes nearly tied) outside it."""

    def __init__(self, label, region, classes=4, sure=8.0):
        super().__init__()
        self.label, self.region, self.classes, self.sure = label, region, classes, sure

    def forward(self, images):
        onehot = torch.nn.functional.one_hot(self.label[0], self.classes).permute(2, 0, 1).float()
        scale = torch.where(self.region, torch.tensor(self.sure), torch.tensor(0.1))
        return (onehot * scale).expand(len(images), -1, -1, -1)


def test_fused_labelled_pool_keeps_the_segmenter_where_sure_and_the_registration_elsewhere():
    from monai_gvae.benchmarks.fewlabels import fused_labelled_pool

    segmented = torch.zeros(1, 8, 8, dtype=torch.long)
    segmented[:, :, :4] = 1
    registered_map = torch.full((1, 8, 8), 2, dtype=torch.long)
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:4] = True  # the segmenter is sure in the top half only
    registered = [{"image": torch.rand(1, 8, 8), "label": registered_map, "slice_index": 7, "fit": 0.9},
                  {"image": torch.rand(1, 8, 8), "label": segmented.clone(), "slice_index": 8, "fit": 0.1}]
    pairs = fused_labelled_pool(_ConfidentOn(segmented, region), registered)
    assert [p["slice_index"] for p in pairs] == [7, 8] and all(p["pseudo_label"] for p in pairs)
    assert torch.equal(pairs[0]["image"], registered[0]["image"])
    fused = pairs[0]["label"]
    assert fused.shape == (1, 8, 8) and fused.dtype == torch.int64
    assert torch.equal(fused[:, :4], segmented[:, :4])  # sure: the segmenter's classes
    assert (fused[:, 4:] == 2).all()  # unsure: the registered class
    # agreement ranks the slices for keep: the second slice's registration equals the segmenter's map
    assert pairs[1]["fit"] == 1.0 and pairs[0]["fit"] < 0.5
    assert [p["slice_index"] for p in fused_labelled_pool(_ConfidentOn(segmented, region), registered, keep=0.5)] == [8]
    # weight 0: the segmenter's argmax everywhere; weight 1: the registered map everywhere
    assert torch.equal(fused_labelled_pool(_ConfidentOn(segmented, region), registered, atlas_weight=0.0)[0]["label"],
                       segmented)
    assert torch.equal(fused_labelled_pool(_ConfidentOn(segmented, region), registered, atlas_weight=1.0)[0]["label"],
                       registered_map)
    with pytest.raises(ValueError, match="registered pool"):
        fused_labelled_pool(_ConfidentOn(segmented, region), [])


def test_run_cell_fused_arms_train_on_the_fused_pool_of_one_registration(monkeypatch):
    from monai_gvae.benchmarks.fewlabels import cell  # spies go where run_cell looks its helpers up

    calls, maps, registrations, fusions = {}, {}, [], []
    train_segmenter, label_maps_for = cell.train_segmenter, cell.label_maps_for
    atlas_labelled_pool, fused_labelled_pool = cell.atlas_labelled_pool, cell.fused_labelled_pool

    def segmenter_spy(items, **kwargs):
        calls[len(calls)] = kwargs
        net, seconds = train_segmenter(items, **kwargs)
        calls[len(calls) - 1]["net"] = net
        return net, seconds

    def maps_spy(arm, pseudo, *args):
        maps[arm] = pseudo
        return label_maps_for(arm, pseudo, *args)

    def atlas_spy(items, pool, keep=1.0, per_volume=False):
        registrations.append(atlas_labelled_pool(items, pool, keep, per_volume=per_volume))
        return registrations[-1]

    def fused_spy(segmenter, registered, keep, atlas_weight, num_classes):
        fusions.append((segmenter, registered, keep, atlas_weight, fused_labelled_pool(
            segmenter, registered, keep, atlas_weight, num_classes)))
        return fusions[-1][-1]

    monkeypatch.setattr(cell, "train_segmenter", segmenter_spy)
    monkeypatch.setattr(cell, "label_maps_for", maps_spy)
    monkeypatch.setattr(cell, "atlas_labelled_pool", atlas_spy)
    monkeypatch.setattr(cell, "fused_labelled_pool", fused_spy)
    s = FewLabelSettings.from_namespace({**SETTINGS, "critic_quantile": -1.0, "seg_iterations": 1,
                                         "atlas_weight": 0.25})
    train = load_brain_slices("train")[:9]  # k = 5 and a pool of 4: few registrations
    arms = ["classical", "selftrain_atlas", "selftrain_fused", "cond_pseudo_fused"]
    runs = run_cell(5, 0, train, load_brain_slices("val"), arms, s, log=lambda m: None)
    assert [r["arm"] for r in runs] == arms
    assert len(registrations) == 1 and len(fusions) == 1  # the pool registered and fused once per cell
    segmenter, registered, keep, weight, fused = fusions[0]
    assert segmenter is calls[0]["net"] and registered is registrations[0] and (keep, weight) == (1.0, 0.25)
    assert calls[2]["synthetic"] is fused and maps["cond_pseudo_fused"] is fused  # the control and the renders
    assert all(a is b for a, b in zip(calls[1]["synthetic"], registered))  # selftrain_atlas: the registered maps
    assert runs[1]["label_seconds"] == runs[2]["label_seconds"] == runs[3]["label_seconds"] >= 0
    with pytest.raises(ValueError, match="put 'classical' first"):
        run_cell(5, 0, train, None, ["selftrain_fused"], s, log=lambda m: None)
    assert set(cell.FUSED_ARMS) == {"selftrain_fused", "cond_pseudo_fused"} <= set(ARM_NAMES)


def test_area_guard_leaves_out_the_registered_maps_that_lost_a_structure(monkeypatch):
    from monai_gvae.benchmarks.fewlabels import cell  # spies go where run_cell looks its helpers up

    calls = {}
    train_segmenter = cell.train_segmenter

    def segmenter_spy(items, **kwargs):
        calls[len(calls)] = kwargs
        return train_segmenter(items, **kwargs)

    train = load_brain_slices("train")[4:22]  # levels 42-50 and 66-74: k = 5 and a pool of 13
    labelled = {j["slice_index"] for j in labelled_subset(train, 5, 0)}
    pool = [i for i in train if i["slice_index"] not in labelled]
    levels = [p["slice_index"] for p in pool]
    # the pool slice with the most pool neighbours within 3 levels loses its labels (it has at least 3 to be judged by)
    lost = max(levels, key=lambda z: sum(abs(z - other) <= 3 for other in levels))
    assert sum(abs(lost - other) <= 3 for other in levels) >= 4

    def true_maps_but_one(items, pool, keep=1.0, per_volume=False):
        # a stand-in registration (no SimpleITK, fast): the pool's own maps, one slice's with every class lost
        pairs = [{"image": p["image"], "label": torch.as_tensor(p["label"]).clone(), "slice_index": p["slice_index"],
                  "pseudo_label": True, "fit": 1.0} for p in pool]
        pairs[levels.index(lost)]["label"].zero_()
        return pairs

    monkeypatch.setattr(cell, "train_segmenter", segmenter_spy)
    monkeypatch.setattr(cell, "atlas_labelled_pool", true_maps_but_one)
    guarded = FewLabelSettings.from_namespace({**SETTINGS, "seg_iterations": 1, "area_guard": True})
    runs = run_cell(5, 0, train, load_brain_slices("val")[:4], ["classical", "selftrain_atlas"], guarded,
                    log=lambda m: None)
    assert runs[1]["guard_left_out"] == [lost]
    assert [p["slice_index"] for p in calls[1]["synthetic"]] == [z for z in levels if z != lost]
    unguarded = FewLabelSettings.from_namespace({**SETTINGS, "seg_iterations": 1})
    runs = run_cell(5, 0, train, load_brain_slices("val")[:4], ["classical", "selftrain_atlas"], unguarded,
                    log=lambda m: None)
    assert "guard_left_out" not in runs[1] and len(calls[3]["synthetic"]) == len(pool)
    with pytest.raises(ValueError, match="whole pool"):
        cell.area_guarded_pool(true_maps_but_one(None, pool)[:-1], pool)


def test_area_guarded_pool_judges_data_dir_slices_within_their_volume_by_level():
    from monai_gvae.benchmarks.fewlabels import area_guarded_pool

    disc = torch.zeros(1, 32, 32, dtype=torch.long)
    disc[0, 8:24, 8:24] = 1  # 256 px
    # volume a: slices 10-14 (kept slices numbered 0-4 across volumes), slice 12 lost its structure; volume b: 2 slices
    pool = [{"volume": "a", "level": z, "slice_index": i} for i, z in enumerate(range(10, 15))]
    pool += [{"volume": "b", "level": 3, "slice_index": 5}, {"volume": "b", "level": 40, "slice_index": 6}]
    registered = [{"label": disc.clone(), "slice_index": p["slice_index"]} for p in pool]
    registered[2]["label"].zero_()
    registered[5]["label"].zero_()  # alone in its volume's window: not judged
    kept = area_guarded_pool(registered, pool, num_classes=2)
    assert [p["slice_index"] for p in kept] == [0, 1, 3, 4, 5, 6]
    # the same maps 20 slices apart within volume a: no neighbours within 3 slices, nothing judged
    spread = [dict(p, level=20 * i) if p["volume"] == "a" else p for i, p in enumerate(pool)]
    assert len(area_guarded_pool(registered, spread, num_classes=2)) == len(pool)


def test_sagittal_slices_are_not_flipped_left_right(tmp_path):
    """A sagittal slice has no left-right axis in-plane: ``--axis 0`` turns the augmentation's column flip off (it
    would flip anterior and posterior), in the segmenter's classical augmentation and in the GVAE's deformations."""
    import nibabel as nib
    import numpy as np
    from monai.transforms import RandFlipd

    from monai_gvae.benchmarks.fewlabels import deformation, fewlabel_splits
    from monai_gvae.benchmarks.segmentation import classical_transform

    label = np.zeros((64, 64, 64), np.int16)
    label[2:62, 2:62, 2:62] = 1  # 60 slices with foreground along every axis: enough for the slab split
    for sub, array in (("images", 100.0 * label + 20.0), ("labels", label)):
        (tmp_path / sub).mkdir()
        nib.save(nib.Nifti1Image(array.astype(np.float32 if sub == "images" else np.int16), np.eye(4)),
                 str(tmp_path / sub / "v.nii.gz"))
    assert fewlabel_splits(tmp_path, axis=2).left_right_flip and fewlabel_splits(tmp_path, axis=1).left_right_flip
    assert not fewlabel_splits(tmp_path, axis=0).left_right_flip
    assert fewlabel_splits().left_right_flip  # the embedded axial slices

    def flips(compose):
        return [t for t in compose.transforms if isinstance(t, RandFlipd)]

    assert len(flips(classical_transform())) == 1 and flips(classical_transform(False)) == []
    assert len(flips(deformation())) == 1 and flips(deformation(False)) == []
    # without the flip, a pair of the fixture's asymmetric map is never mirrored: every deformed copy keeps its
    # structure on the side it was (affine and elastic warps move it by a few pixels only)
    asym = torch.zeros(1, 32, 32, dtype=torch.long)
    asym[0, 8:24, 2:10] = 1
    items = [{"image": asym.float(), "label": asym}]
    for left_right_flip, expect_mirrored in ((False, False), (True, True)):
        pairs = deformed_pairs(items, 16, seed=0, left_right_flip=left_right_flip)
        mirrored = [bool(p["label"][0, :, 16:].sum() > p["label"][0, :, :16].sum()) for p in pairs]
        assert any(mirrored) == expect_mirrored


def test_the_pool_is_segmented_without_recording_gradients():
    # the pool labellers only read the segmenter's outputs: no autograd graph over the whole pool
    from monai_gvae.benchmarks.fewlabels.pool_labels import _pool_logits

    net = torch.nn.Conv2d(1, 4, 1)
    images, logits = _pool_logits(net, [{"image": torch.rand(1, 8, 8)} for _ in range(3)])
    assert images.shape == (3, 1, 8, 8) and logits.shape == (3, 4, 8, 8)
    assert not logits.requires_grad
    assert net.training is False  # segmented in eval mode


def test_synthetic_intensity_reaches_the_synthetic_side_of_every_synthetic_arm(monkeypatch):
    from monai_gvae.benchmarks.fewlabels import cell

    calls = []
    train_segmenter = cell.train_segmenter

    def segmenter_spy(items, **kwargs):
        calls.append(kwargs)
        return train_segmenter(items, **kwargs)

    with pytest.raises(ValueError, match="synthetic_intensity must be one of"):
        FewLabelSettings.from_namespace({**SETTINGS, "synthetic_intensity": "blur"})
    monkeypatch.setattr(cell, "train_segmenter", segmenter_spy)
    train = load_brain_slices("train")[:12]
    settings = FewLabelSettings.from_namespace({**SETTINGS, "seg_iterations": 1, "synthetic_intensity": "noise"})
    runs = run_cell(5, 0, train, load_brain_slices("val")[:4], ["classical", "selftrain"], settings, log=lambda m: None)
    assert [r["arm"] for r in runs] == ["classical", "selftrain"]
    transform = calls[1]["synthetic_transform"]
    assert [type(t).__name__ for t in transform.transforms] == ["RandGaussianNoised", "ScaleIntensityRanged"]
    plain = FewLabelSettings.from_namespace({**SETTINGS, "seg_iterations": 1})
    run_cell(5, 0, train, load_brain_slices("val")[:4], ["classical", "selftrain"], plain, log=lambda m: None)
    assert calls[3]["synthetic_transform"] is None


def test_seg_repeats_average_segmenters_from_other_seeds_and_keep_repeat_zero(monkeypatch):
    from monai_gvae.benchmarks.fewlabels import cell
    from monai_gvae.benchmarks.fewlabels.settings import SEG_REPEAT_SEED_STRIDE

    seeds = []
    train_segmenter = cell.train_segmenter

    def segmenter_spy(items, **kwargs):
        assert kwargs["device"] == "cpu" and kwargs["lr_schedule"] == "constant"  # the settings reach every segmenter
        seeds.append((kwargs["seed"], kwargs["shuffle_seed"]))
        return train_segmenter(items, **kwargs)

    with pytest.raises(ValueError, match="seg_repeats must be >= 1"):
        FewLabelSettings.from_namespace({**SETTINGS, "seg_repeats": 0})
    monkeypatch.setattr(cell, "train_segmenter", segmenter_spy)
    train, val = load_brain_slices("train")[:12], load_brain_slices("val")[:4]
    once = run_cell(5, 0, train, val, ["classical", "selftrain"],
                    FewLabelSettings.from_namespace({**SETTINGS, "seg_iterations": 2}), log=lambda m: None)
    assert "repeat_dice" not in once[0]
    seeds.clear()
    twice = run_cell(5, 0, train, val, ["classical", "selftrain"],
                     FewLabelSettings.from_namespace({**SETTINGS, "seg_iterations": 2, "seg_repeats": 2}),
                     log=lambda m: None)
    assert seeds == [(0, 0), (SEG_REPEAT_SEED_STRIDE, SEG_REPEAT_SEED_STRIDE)] * 2
    for single, repeated in zip(once, twice):
        first, second = repeated["repeat_dice"]
        assert first == single["dice"]  # repeat 0 is the segmenter of one repeat
        assert repeated["dice"] == pytest.approx((first + second) / 2)
    # the classical arm's repeat 0 labelled the pool: self-training's first repeat is the same as with one repeat
    assert twice[1]["repeat_dice"][0] == once[1]["dice"]
