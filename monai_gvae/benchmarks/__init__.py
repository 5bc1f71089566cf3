"""What the benchmark scripts in ``examples/`` share, as tested package code.

The scripts are short command-line recipes; the protocol lives here, by topic:

* :mod:`~monai_gvae.benchmarks.segmentation` -- k-subset draw, classical augmentation, a MONAI UNet trained with
  synthetic mixing, foreground Dice, and the segmentation benchmark's arms and tables;
* :mod:`~monai_gvae.benchmarks.fewlabels` -- the few-label arms (label-conditioned GVAE, unlabelled pool,
  controls), their tables, and merging runs split by seed;
* :mod:`~monai_gvae.benchmarks.paper_tables` -- GVAE, VAE and WGAN-GP trained under one budget and scored, for
  the paper's Tables 4-7 (:mod:`~monai_gvae.benchmarks.paper_report` writes them);
* :mod:`~monai_gvae.benchmarks.throughput` -- throughput and memory figures, each a ratio measured side by
  side (:mod:`~monai_gvae.benchmarks.timing` has the timing helpers);
* :mod:`~monai_gvae.benchmarks.stats` -- mean and spread over seeds, paired differences, 95 % intervals;
* :mod:`~monai_gvae.benchmarks.report` and :mod:`~monai_gvae.benchmarks.plots` -- Markdown tables, protocol
  headers, output folders, plots.

This is the package's top layer: it may import every other layer except the command line (``monai_gvae.cli``),
and nothing in the package imports it.
"""

from .report import command_line, cpu_model, markdown_table, prepare_output_dir, read_json, write_json, write_text
from .stats import (
    PairedDifference,
    Verdict,
    bootstrap_interval,
    interval_verdict,
    mean_std,
    paired_difference,
    paired_differences_by_seed,
    spread_verdict,
    summarize,
    t_interval,
)

__all__ = [
    "command_line",
    "cpu_model",
    "markdown_table",
    "prepare_output_dir",
    "read_json",
    "write_json",
    "write_text",
    "PairedDifference",
    "Verdict",
    "bootstrap_interval",
    "interval_verdict",
    "mean_std",
    "paired_difference",
    "paired_differences_by_seed",
    "spread_verdict",
    "summarize",
    "t_interval",
]
