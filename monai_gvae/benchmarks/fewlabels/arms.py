"""The few-label benchmark's arms: their names in tables and plots, where the conditional arms' label maps
come from, and the groups :func:`~monai_gvae.benchmarks.fewlabels.run_cell` dispatches on (docs/fewlabels.md
section 6 has what each arm measured)."""

from __future__ import annotations

__all__ = ["ARMS", "ARM_NAMES", "ARM_SHORT", "POOL_ARMS", "LABEL_MAP_SOURCES", "COTRAINED_ARMS", "CONDITIONAL_ARMS",
           "PSEUDO_LABEL_ARMS", "ATLAS_ARMS", "FUSED_ARMS", "SCHEDULES", "K_UNITS", "GVAE_ARMS", "arm_names"]

ARMS = ("classical", "elastic", "selftrain", "cond", "cond_pseudo", "cond_pool", "joint_pool", "interp", "cond_interp",
        "cond_pool_interp", "selftrain_cond", "cond_pseudo_post", "cond_pseudo_interp", "cond_pseudo_checked",
        "cond_pseudo_cotrained", "selftrain_atlas", "cond_pseudo_atlas", "selftrain_fused", "cond_pseudo_fused", "atlas_synth")
ARM_NAMES = {
    "classical": "classical (flip + affine)",
    "elastic": "classical + elastic-warped real pairs (control, no GVAE)",
    "selftrain": "classical + pseudo-labelled pool images (self-training control, no GVAE)",
    "cond_pseudo": "classical + label-conditioned GVAE (k slices) rendering the pool's pseudo-label maps",
    "cond": "classical + label-conditioned GVAE (k slices only)",
    "cond_pool": "classical + label-conditioned GVAE pre-trained on the unlabelled pool",
    "joint_pool": "classical + joint GVAE variants of the unlabelled pool, segmenter-filtered",
    "interp": "classical + interpolated pairs (control, no GVAE: blended images)",
    "cond_interp": "classical + label-conditioned GVAE (k slices only) on interpolated label maps",
    "cond_pool_interp": "classical + label-conditioned GVAE pre-trained on the unlabelled pool, on interpolated "
                        "label maps",
    "selftrain_cond": "classical + pseudo-labelled pool images and cond_pseudo's GVAE images of the pool's maps "
                      "(each at the synthetic share)",
    "cond_pseudo_post": "classical + label-conditioned GVAE (k slices) re-rendering the pool's images at their "
                        "pseudo-label maps (posterior latents)",
    "cond_pseudo_interp": "classical + label-conditioned GVAE (k slices) rendering maps interpolated between two "
                          "similar pseudo-label maps of the pool",
    "cond_pseudo_checked": "classical + label-conditioned GVAE (k slices) rendering the pool's pseudo-label maps, "
                           "kept where the segmenter finds every class",
    "cond_pseudo_cotrained": "classical + label-conditioned GVAE trained on the k slices and the pseudo-labelled pool, "
                             "rendering the pool's pseudo-label maps",
    "selftrain_atlas": "classical + pool images with the k slices' labels registered to them (atlas control, no GVAE)",
    "cond_pseudo_atlas": "classical + label-conditioned GVAE (k slices) rendering the pool's registered label maps",
    "selftrain_fused": "classical + pool images with the segmenter's and the registered labels fused (control, no "
                       "GVAE)",
    "cond_pseudo_fused": "classical + label-conditioned GVAE (k slices) rendering the pool's fused label maps",
    "atlas_synth": "classical + the k slices warped onto the pool images with their labels (registered synthesis "
                   "control, no GVAE)",
}
ARM_SHORT = {
    "classical": "classical",
    "elastic": "+ elastic control (no GVAE)",
    "selftrain": "+ self-training control (no GVAE)",
    "cond_pseudo": "+ cond. GVAE, pool pseudo-label maps",
    "cond": "+ cond. GVAE (k slices)",
    "cond_pool": "+ cond. GVAE (pool pre-trained)",
    "joint_pool": "+ joint GVAE pool variants",
    "interp": "+ interpolation control (no GVAE)",
    "cond_interp": "+ cond. GVAE (k), interpolated maps",
    "cond_pool_interp": "+ cond. GVAE (pool), interpolated maps",
    "selftrain_cond": "+ self-training + cond. GVAE, pool maps",
    "cond_pseudo_post": "+ cond. GVAE, pool images re-rendered at pool maps",
    "cond_pseudo_interp": "+ cond. GVAE, interpolated pool maps",
    "cond_pseudo_checked": "+ cond. GVAE, pool maps, per-class check",
    "cond_pseudo_cotrained": "+ cond. GVAE (k + pool), pool maps",
    "selftrain_atlas": "+ atlas-labelled pool (no GVAE)",
    "cond_pseudo_atlas": "+ cond. GVAE, atlas-labelled pool maps",
    "selftrain_fused": "+ fused-labelled pool (no GVAE)",
    "cond_pseudo_fused": "+ cond. GVAE, fused pool maps",
    "atlas_synth": "+ registered synthesis (no GVAE)",
}
POOL_ARMS = ("cond_pool", "joint_pool", "cond_pool_interp")
"""Arms that pre-train a GVAE on the unlabelled pool (the train split's images, labels hidden)."""
LABEL_MAP_SOURCES = {
    "cond": ("deformed", "k"),
    "cond_pool": ("deformed", "k"),
    "cond_interp": ("interpolated", "k"),
    "cond_pool_interp": ("interpolated", "k"),
    "cond_pseudo": ("deformed", "pool"),
    "selftrain_cond": ("deformed", "pool"),
    "cond_pseudo_post": ("deformed", "pool"),
    "cond_pseudo_interp": ("interpolated", "pool"),
    "cond_pseudo_checked": ("deformed", "pool"),
    "cond_pseudo_cotrained": ("deformed", "pool"),
    "cond_pseudo_atlas": ("deformed", "atlas"),
    "cond_pseudo_fused": ("deformed", "fused"),
}
"""Where each conditional arm's label maps come from, ``(how, whose)``: deformed or interpolated copies of the k
slices' maps, of the pool's pseudo-label maps (``"pool"``), of the pool's registered maps (``"atlas"``, see
:func:`atlas_labelled_pool`) or of both fused (``"fused"``, see :func:`fused_labelled_pool`; see
:func:`label_maps_for`); the arms of one source and GVAE render
the same maps (``cond_pseudo_post`` from posterior latents; ``cond_pseudo_checked`` keeps those of the same candidates
that pass its per-class segmenter check, drawing more candidates to replace the rejected)."""
COTRAINED_ARMS = ("cond_pseudo_cotrained",)
"""Conditional arms whose GVAE trains on the k pairs **and** the pool's pseudo-labelled pairs
(:func:`cotraining_pairs`), not on the k pairs alone: the pool's images show the generator the anatomy of every level
of the train split (a GVAE trained on five slices draws a structure they barely show, e.g. the cerebellum, as a flat
blob; docs/fewlabels.md section 6, k = 20)."""
CONDITIONAL_ARMS = tuple(LABEL_MAP_SOURCES)
PSEUDO_LABEL_ARMS = ("selftrain",) + tuple(arm for arm, (_, whose) in LABEL_MAP_SOURCES.items() if whose == "pool")
"""Arms that use the k-trained segmenter's pseudo-labels of the pool (the train images outside the k): the
self-training control and the conditional arms that render the pool's maps."""
ATLAS_ARMS = ("selftrain_atlas", "atlas_synth") + tuple(arm for arm, (_, whose) in LABEL_MAP_SOURCES.items()
                                                       if whose == "atlas")
"""Arms that label the pool by registration instead (:func:`atlas_labelled_pool`): the atlas control (the pool's
own images with those labels), registered synthesis (the warped atlas images with the same labels:
:func:`registered_synthesis_pairs`) and the conditional arm that renders those maps."""
FUSED_ARMS = ("selftrain_fused",) + tuple(arm for arm, (_, whose) in LABEL_MAP_SOURCES.items() if whose == "fused")
"""Arms that label the pool with the classical segmenter's probabilities and the registered maps fused per pixel
(:func:`fused_labelled_pool`): the fused control and the conditional arm that renders those maps."""
SCHEDULES = ("mix", "finetune")
K_UNITS = ("slice", "volume")
"""What a cell's k counts: labelled slices, or labelled volumes (whole scans, every slice labelled)."""
GVAE_ARMS = CONDITIONAL_ARMS + ("joint_pool",)
"""Arms that train a GVAE (what the :data:`GVAE_SETTINGS` change)."""


def arm_names(left_right_flip: bool = True, k_unit: str = "slice") -> dict[str, str]:
    """:data:`ARM_NAMES` with the classical arm named by the augmentation it ran: without the left-right flip for
    sagittal slices, which have no lateral axis in-plane (:attr:`FewLabelSettings.left_right_flip`); and "k scans"
    for "k slices" where k counts labelled volumes (``k_unit="volume"``).

    Example::

        arm_names(False)["classical"]  # 'classical (affine only: sagittal slices are not flipped)'
    """
    names = dict(ARM_NAMES)
    if not left_right_flip:
        names["classical"] = "classical (affine only: sagittal slices are not flipped)"
    if k_unit == "volume":
        names = {arm: name.replace("k slices", "k scans") for arm, name in names.items()}
    return names
