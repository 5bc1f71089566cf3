"""``monai-gvae``: the command line of monai-gvae (also ``python -m monai_gvae``).

Subcommands ``synthesize``, ``evaluate``, ``memorization``, ``train``, ``bundle`` (``list``, ``init``, ``schema``) and
``export-data``; each parses its arguments and calls one package function (:func:`monai_gvae.bundle.synthesize`,
:func:`monai_gvae.bundle.evaluation.evaluate_folder`, :func:`monai_gvae.bundle.evaluation.check_memorization`,
:func:`monai_gvae.bundle.training.train_bundle`, :mod:`monai_gvae.bundle.catalog`,
:func:`monai_gvae.bundle.export_data.export_brain_slices`), so everything here can be done from Python as well. See
``docs/cli.md``.

Exit status: 0 on success, 1 when the command fails with a clear error (existing outputs without
``--overwrite``, an unreadable or inconsistent input, a missing file), printed as one line on stderr
(``MONAI_GVAE_DEBUG=1`` adds the traceback), 2 for invalid arguments.

Torch and MONAI are imported only by the commands that need them, so that ``--help``, ``--version`` and argument
errors answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from monai_gvae.utils import parse_value

__all__ = ["main", "build_parser", "parse_overrides"]

PROG = "monai-gvae"


def _version() -> str:
    from monai_gvae._version import __version__

    return __version__


def _model_source(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("model (one of)")
    source = group.add_mutually_exclusive_group(required=required)
    source.add_argument("--bundle", metavar="DIR", help="a trained bundle folder: its models/model.pt is used")
    source.add_argument("--checkpoint", metavar="FILE", help="a GVAE checkpoint (state dict or CheckpointSaver dict)")
    group.add_argument(
        "--key", default="gvae", help="entry of a multi-network checkpoint (default: gvae; e.g. gvae_ema)"
    )


def _common(parser: argparse.ArgumentParser, device: bool = True) -> None:
    if device:
        parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default: cpu)")
        parser.add_argument(
            "--batch-size", type=_positive_int, default=16, metavar="B", help="samples per forward pass (default: 16)"
        )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _intensity(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--intensity-range", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None, help=help_text)


def _intensity_range(args: argparse.Namespace) -> tuple[float, float] | None:
    return tuple(args.intensity_range) if args.intensity_range else None


def _subcommand(
    sub: argparse._SubParsersAction, name: str, help_text: str, description: str
) -> argparse.ArgumentParser:
    # no abbreviations: a shortened option could silently mean a different one once options are added
    return sub.add_parser(name, help=help_text, description=description, allow_abbrev=False)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``monai-gvae`` (one sub-parser per command).

    Example::

        args = build_parser().parse_args(["synthesize", "--bundle", "bundles/gvae_brain2d", "-n", "4", "--out", "x"])
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="GVAE synthesis, evaluation, memorisation check and training from the command line. "
        "Every synthetic file is marked synthetic; nothing is overwritten without --overwrite.",
        epilog="Run 'monai-gvae COMMAND --help' for the options of a command. Documentation: docs/cli.md",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_synthesize(sub)
    _add_evaluate(sub)
    _add_memorization(sub)
    _add_train(sub)
    _add_bundle(sub)
    _add_export_data(sub)
    return parser


def _add_synthesize(sub: argparse._SubParsersAction) -> None:
    p = _subcommand(
        sub,
        "synthesize",
        "write synthetic images (+ labels) as NIfTI, DICOM or PNG, with a manifest",
        "Draw N samples from a trained GVAE and write them, marked synthetic, with manifest.json "
        "(file, seed, model sha256, package version, time). The same --seed gives identical files.",
    )
    _model_source(p)
    p.add_argument("-n", "--num-samples", type=_positive_int, required=True, metavar="N", help="number of samples")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--format", choices=("nifti", "dicom", "png"), default="nifti", help="output format (default: nifti)"
    )
    p.add_argument(
        "--reference",
        metavar="IMAGE",
        help="NIfTI file, DICOM file or DICOM series folder whose geometry (orientation, origin, field of view) "
        "the outputs take; no other information is read from it",
    )
    p.add_argument("--seed", type=int, default=0, help="latent seed (default: 0)")
    _intensity(p, "intensity range of the written images (default: 0 1)")
    p.add_argument("--png-bit-depth", type=int, choices=(8, 16), default=8, help="PNG grey levels (default: 8)")
    p.add_argument(
        "--class-names",
        nargs="+",
        metavar="NAME",
        help="names of the label classes, background first (DICOM-SEG segment names and the manifest; default: "
        "from the bundle's metadata.json with --bundle, else 'background', 'class 1', ...)",
    )
    _common(p)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = _subcommand(
        sub,
        "evaluate",
        "metrics of a model against a folder of real images, as JSON",
        "The metrics of a bundle's metrics.json (monai_gvae.metrics.evaluate: reconstruction L1 in "
        "[0, 1], Dice for joint image+label models, KL, ELBO, Gaussian-kernel MMD, MS-SSIM diversity) of a model "
        "on a folder of real images (NIfTI, DICOM series, PNG; DATA/images + DATA/labels for joint models). "
        "The JSON report goes to stdout and, with --out, to a file.",
    )
    _model_source(p)
    p.add_argument("--data", required=True, metavar="DIR", help="folder of real images")
    p.add_argument("--out", metavar="FILE", help="JSON file to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior samples and ELBO draws (default: 0)")
    _intensity(p, "fixed intensity range of the inputs mapped to [0, 1] (default: per-image min-max)")
    _common(p)


def _add_memorization(sub: argparse._SubParsersAction) -> None:
    p = _subcommand(
        sub,
        "memorization",
        "flag synthetic samples that are near-copies of training images",
        "Nearest-neighbour distances (pixel RMS, intensities in [0, 1]) from each synthetic sample to "
        "the training images; samples closer than the PERCENTILE-th percentile of real-to-training nearest-"
        "neighbour distances (held-out images with --holdout, else training leave-one-out) are flagged. Writes "
        "OUT/memorization.json and OUT/memorization_closest_pairs.png; exits 0 whether or not samples are flagged "
        "(see 'num_flagged'), or 3 with --fail-on-flagged when some are.",
    )
    p.add_argument("--train", required=True, metavar="DIR", help="folder of the training images")
    p.add_argument("--synthetic", metavar="DIR", help="folder of synthetic images (e.g. a synthesize output)")
    _model_source(p, required=False)
    p.add_argument(
        "-n", "--num-samples", type=_positive_int, default=64, metavar="N", help="samples drawn from the model (default: 64)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the drawn samples (default: 0)")
    p.add_argument("--holdout", metavar="DIR", help="real images not used in training (reference distances)")
    p.add_argument("--percentile", type=_percentile, default=5.0, help="flagging percentile, 0-100 (default: 5)")
    p.add_argument("--pairs", type=_positive_int, default=8, help="closest pairs drawn in the PNG (default: 8)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the report")
    p.add_argument("--fail-on-flagged", action="store_true", help="exit with status 3 when any sample is flagged")
    _intensity(p, "fixed intensity range of all inputs mapped to [0, 1] (default: per-image min-max)")
    _common(p)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = _subcommand(
        sub,
        "train",
        "train a bundle (a thin wrapper over the bundle's training run)",
        "Run a bundle's training (what 'python -m monai.bundle run training' does) with config "
        "overrides given as '--ID VALUE' (e.g. --max_epochs 5 --output_dir runs/a --train#trainer#amp true). "
        "Refuses to run into an output_dir holding checkpoints unless --overwrite.",
    )
    p.add_argument(
        "--bundle",
        default=None,
        metavar="DIR",
        help="bundle folder, or the name of a shipped bundle (default: the shipped gvae_brain2d, whose output_dir "
        "then defaults to runs/gvae_brain2d)",
    )
    p.add_argument(
        "--config",
        action="append",
        metavar="FILE",
        help="config file(s), merged in order (default: configs/train.yaml)",
    )
    p.add_argument("--meta", metavar="FILE", help="metadata file (default: configs/metadata.json)")
    p.add_argument("--run-id", default="training", help="config id to run (default: training)")
    _common(p, device=False)


def parse_overrides(args: Sequence[str]) -> dict[str, Any]:
    """``['--max_epochs', '1', '--output_dir=/x']`` -> ``{'max_epochs': 1, 'output_dir': '/x'}``.

    Raises:
        ValueError: an item that is not ``--ID VALUE`` or ``--ID=VALUE``.
    """
    out: dict[str, Any] = {}
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or len(item) == 2:
            raise ValueError(f"expected a config override --ID VALUE, got {item!r}.")
        if "=" in item:
            key, text = item[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(items) or (items[i + 1].startswith("--") and len(items[i + 1]) > 2):
                raise ValueError(f"config override {item} needs a value.")
            key, text = item[2:], items[i + 1]
            i += 2
        out[key] = parse_value(text)
    return out


def _checkpoint(args: argparse.Namespace) -> str | None:
    if getattr(args, "checkpoint", None):
        return args.checkpoint
    if getattr(args, "bundle", None):
        from monai_gvae.networks import bundle_model_path

        return bundle_model_path(args.bundle)
    return None


def _load(args: argparse.Namespace):
    from monai_gvae.networks import load_gvae

    return load_gvae(_checkpoint(args), key=args.key)


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from monai_gvae.bundle.synthesis import label_class_names, synthesize

    model = _load(args)
    class_names = args.class_names
    if class_names is None and getattr(args, "bundle", None) and model.label_channels:
        class_names = label_class_names(args.bundle, model.image_channels, model.num_classes)
    manifest = synthesize(
        model,
        args.out,
        num_samples=args.num_samples,
        seed=args.seed,
        batch_size=args.batch_size,
        format=args.format,
        reference=args.reference,
        overwrite=args.overwrite,
        device=args.device,
        intensity_range=_intensity_range(args) or (0.0, 1.0),
        png_bit_depth=args.png_bit_depth,
        progress=not args.no_progress,
        class_names=class_names,
    )
    segmentations = " (+ DICOM-SEG label objects)" if any("segmentation" in e for e in manifest["files"]) else ""
    print(
        f"wrote {len(manifest['files'])} synthetic sample(s) ({args.format}){segmentations} and manifest.json "
        f"to {args.out}"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from monai_gvae.bundle.evaluation import evaluate_folder, report_to_json

    report = evaluate_folder(
        _load(args),
        args.data,
        output=args.out,
        intensity_range=_intensity_range(args),
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    sys.stdout.write(report_to_json(report) + "\n")
    return 0


def _cmd_memorization(args: argparse.Namespace) -> int:
    from monai_gvae.bundle.evaluation import check_memorization

    checkpoint = _checkpoint(args)
    if (args.synthetic is None) == (checkpoint is None):
        raise ValueError(
            "give either --synthetic DIR or a model (--bundle DIR / --checkpoint FILE) to draw samples from."
        )
    report = check_memorization(
        args.train,
        args.out,
        synthetic_dir=args.synthetic,
        model=None if checkpoint is None else _load(args),
        num_samples=args.num_samples,
        seed=args.seed,
        holdout_dir=args.holdout,
        percentile=args.percentile,
        intensity_range=_intensity_range(args),
        num_pairs=args.pairs,
        batch_size=args.batch_size,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    pixel = report["spaces"]["pixel"]
    print(
        f"{pixel['num_flagged']} of {pixel['num_synthetic']} synthetic sample(s) flagged (pixel RMS distance < "
        f"{pixel['threshold']:.4g}, the {pixel['percentile']:g}th percentile of real reference distances); "
        f"report in {os.path.join(args.out, 'memorization.json')}"
    )
    for name in report["flagged"]:
        print(f"  flagged: {name}")
    return 3 if args.fail_on_flagged and report["flagged"] else 0


def _cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from monai_gvae.bundle.training import train_bundle

    output_dir = train_bundle(
        args.bundle,
        config_files=args.config,
        meta_file=args.meta,
        run_id=args.run_id,
        overrides=parse_overrides(extra),
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(f"training finished; outputs in {output_dir}")
    return 0


def _positive_int(text: str) -> int:
    """An argument that must be a positive integer (``-n``, ``--batch-size``): else an argument error (exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _percentile(text: str) -> float:
    """An argument that must be a number in [0, 100]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 100], got {text!r}") from None
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 100], got {text}")
    return value


def _add_bundle(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bundle",
        help="the MONAI bundles shipped with monai-gvae: list them, write one to a folder",
        description="The bundles shipped with monai-gvae. 'init' writes one (configs, metadata, docs, licence "
        "notices) to a folder that MONAI's own commands run from any working directory: python -m monai.bundle run "
        "training --config_file DIR/configs/train.yaml --meta_file DIR/configs/metadata.json --bundle_root DIR",
        allow_abbrev=False,
    )
    actions = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    actions.add_parser("list", help="names, versions and tasks of the shipped bundles", allow_abbrev=False)
    init = actions.add_parser(
        "init",
        help="write a shipped bundle to a folder",
        description="Write the shipped bundle NAME (configs, metadata, docs, LICENSE) to DIR. Refuses a folder that "
        "is not empty unless --overwrite.",
        allow_abbrev=False,
    )
    init.add_argument("name", metavar="NAME", help="a shipped bundle ('monai-gvae bundle list')")
    init.add_argument("folder", metavar="DIR", help="the folder to write (created)")
    init.add_argument("--overwrite", action="store_true", help="write into a folder that is not empty")
    actions.add_parser(
        "schema",
        help="print the path of the bundles' metadata schema (for verify_metadata --filepath)",
        description="Print the path of the metadata schema shipped with monai-gvae, for an offline "
        "'python -m monai.bundle verify_metadata --meta_file DIR/configs/metadata.json --filepath PATH'.",
        allow_abbrev=False,
    )


def _add_export_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-data",
        help="write the embedded brain slices as NIfTI folders (OUT/<split>/images, OUT/<split>/labels)",
        description="Write the brain slices embedded in monai-gvae (real template data, not synthetic) as NIfTI "
        "files, one folder per split: OUT/train/images, OUT/train/labels, OUT/test/images, ... (the layout "
        "'evaluate --data' and 'memorization --train/--holdout' read).",
        allow_abbrev=False,
    )
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing files (default: refuse)")


class _UsageError(Exception):
    """An argument found invalid after parsing (exit status 2, like argparse's errors)."""


def _cmd_bundle(args: argparse.Namespace) -> int:
    from monai_gvae.bundle import catalog

    if args.bundle_command == "list":
        root = catalog.shipped_bundles_root()
        for name in catalog.bundle_names():
            info = catalog.bundle_summary(name)
            print(f"{name:<16} {info['version']:<8} {info['task']}")
        print(f"(from {root}; write one to a folder with: {PROG} bundle init NAME DIR)")
        return 0
    if args.bundle_command == "schema":
        from monai_gvae.bundle import SCHEMA_FILE

        print(SCHEMA_FILE)
        return 0
    names = catalog.bundle_names()
    if args.name not in names:
        raise _UsageError(f"unknown bundle {args.name!r}; the shipped bundles are: {', '.join(names)}")
    files = catalog.init_bundle(args.name, args.folder, overwrite=args.overwrite)
    configs = os.path.join(args.folder, "configs")
    print(
        f"wrote bundle {args.name} ({len(files)} files) to {args.folder}; train it with: python -m monai.bundle run "
        f"training --config_file {os.path.join(configs, 'train.yaml')} --meta_file "
        f"{os.path.join(configs, 'metadata.json')} --bundle_root {args.folder}"
    )
    return 0


def _cmd_export_data(args: argparse.Namespace) -> int:
    from monai_gvae.bundle.export_data import export_brain_slices

    counts = export_brain_slices(args.out, overwrite=args.overwrite)
    total = sum(counts.values())
    splits = ", ".join(f"{split} {n}" for split, n in counts.items())
    print(f"wrote {total} brain slices ({splits}) as images/ + labels/ NIfTI files to {args.out}")
    return 0


def _run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    commands = {
        "synthesize": _cmd_synthesize,
        "evaluate": _cmd_evaluate,
        "memorization": _cmd_memorization,
        "bundle": _cmd_bundle,
        "export-data": _cmd_export_data,
    }
    if args.command == "train":
        return _cmd_train(args, extra)
    return commands[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``monai-gvae`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Example::

        main(["synthesize", "--checkpoint", "model.pt", "-n", "4", "--out", "synthetic", "--format", "dicom"])
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return _run(args, extra)
    except _UsageError as e:
        parser.exit(2, f"{PROG} {args.command}: error: {e}\n")
    except Exception as e:
        # one line for an error the user can fix (also behind MONAI's "Failed to evaluate ConfigExpression");
        # a traceback for anything else, or with MONAI_GVAE_DEBUG=1
        from monai_gvae.bundle.console import debug_enabled, one_line, user_error

        shown = user_error(e)
        if shown is None or debug_enabled():
            raise
        print(f"{PROG} {args.command}: error: {one_line(shown)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
