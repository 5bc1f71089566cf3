"""The few-label benchmark's arms: label-conditioned GVAE synthesis added to classical augmentation for a MONAI
UNet trained on k labelled slices, against classical augmentation alone and against the cheapest use of the same
unlabelled pool (self-training); docs/fewlabels.md.

It shares the segmentation benchmark's segmenter, classical augmentation and metric
(:mod:`monai_gvae.benchmarks.segmentation`). By topic:

* :mod:`.arms` -- the arms, their names and the groups they fall in;
* :mod:`.settings` -- :class:`FewLabelSettings`, the command line's settings, typed;
* :mod:`.splits` -- :func:`fewlabel_splits`: the train / val / test slabs (or held-out volumes) of the embedded
  slices or of a user's NIfTI folders; :func:`labelled_and_pool`: a cell's k labelled slices or scans and its pool;
* :mod:`.pool_labels` -- labels for the unlabelled pool: pseudo-labels, registered maps, both fused, and guards;
* :mod:`.synthesis` -- deformations, GVAE training, and the synthetic pairs of the GVAE arms;
* :mod:`.cell` -- :func:`run_cell`: every arm of one (k, seed) cell;
* :mod:`.outputs` -- :func:`write_fewlabels_outputs` (tables of paired differences with 95 % intervals, plot) and
  :func:`merge_runs` (runs split by seed over processes).

Everything named in ``__all__`` is importable from here, as it was when this was one module.
"""

from .arms import (
    ARM_NAMES,
    ARM_SHORT,
    ARMS,
    ATLAS_ARMS,
    CONDITIONAL_ARMS,
    COTRAINED_ARMS,
    FUSED_ARMS,
    GVAE_ARMS,
    K_UNITS,
    LABEL_MAP_SOURCES,
    POOL_ARMS,
    PSEUDO_LABEL_ARMS,
    SCHEDULES,
    arm_names,
)
from .cell import run_cell
from .outputs import (
    CONFIDENCE_FORMAT,
    fewlabels_report,
    mean_gvae_seconds,
    merge_runs,
    render_run,
    worst_class_losses,
    write_fewlabels_outputs,
)
from .pool_labels import (
    area_guarded_pool,
    atlas_labelled_pool,
    cotraining_pairs,
    fused_labelled_pool,
    pseudo_label_quality,
    registered_synthesis_pairs,
    pseudo_labelled_pool,
)
from .settings import CONDITION_MODES, CRITIC_HEADS, SEG_OBJECTIVES, UPSAMPLE_MODES, FewLabelSettings
from .splits import (
    MIN_VOLUMES_FOR_VOLUME_SPLIT,
    SPLIT_UNITS,
    VOLUME_SPLIT_SEED,
    FewLabelData,
    fewlabel_splits,
    labelled_and_pool,
)
from .synthesis import (
    conditional_synthesis,
    deformation,
    deformed_pairs,
    gvae_parts,
    interpolated_pairs,
    joint_pool_synthesis,
    label_maps_for,
    packer,
    pretrain,
    save_pairs,
    train_gvae,
)

__all__ = [
    "ARMS",
    "ARM_NAMES",
    "ARM_SHORT",
    "arm_names",
    "POOL_ARMS",
    "PSEUDO_LABEL_ARMS",
    "LABEL_MAP_SOURCES",
    "label_maps_for",
    "CONDITIONAL_ARMS",
    "CONDITION_MODES",
    "CRITIC_HEADS",
    "UPSAMPLE_MODES",
    "SCHEDULES",
    "K_UNITS",
    "SPLIT_UNITS",
    "MIN_VOLUMES_FOR_VOLUME_SPLIT",
    "VOLUME_SPLIT_SEED",
    "SEG_OBJECTIVES",
    "CONFIDENCE_FORMAT",
    "GVAE_ARMS",
    "FewLabelSettings",
    "FewLabelData",
    "fewlabel_splits",
    "labelled_and_pool",
    "pseudo_label_quality",
    "registered_synthesis_pairs",
    "pseudo_labelled_pool",
    "cotraining_pairs",
    "COTRAINED_ARMS",
    "atlas_labelled_pool",
    "area_guarded_pool",
    "ATLAS_ARMS",
    "fused_labelled_pool",
    "FUSED_ARMS",
    "worst_class_losses",
    "deformation",
    "packer",
    "gvae_parts",
    "train_gvae",
    "pretrain",
    "deformed_pairs",
    "interpolated_pairs",
    "conditional_synthesis",
    "joint_pool_synthesis",
    "save_pairs",
    "run_cell",
    "mean_gvae_seconds",
    "fewlabels_report",
    "write_fewlabels_outputs",
    "render_run",
    "merge_runs",
]
