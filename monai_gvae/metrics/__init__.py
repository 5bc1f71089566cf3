"""Metrics of generative models: MMD, MS-SSIM diversity, KL/ELBO/importance-weighted bound, Frechet distance,
sharpness relative to real images.

Functions take tensors and return numbers; the ``*Metric`` classes are MONAI cumulative metrics, so they
plug into ``monai.handlers.IgniteMetricHandler`` (and evaluators) like MONAI's own. ``memorization`` finds
generated samples that copy training images. :func:`evaluate` runs a trained model over held-out data and
returns the standard set (reconstruction, Dice, KL, ELBO, MMD, MS-SSIM diversity, sharpness ratio) as numbers:
what both the bundles' ``metrics.json`` and ``monai-gvae evaluate`` report (JSON writing is in
:mod:`monai_gvae.bundle.evaluation`).
"""

from .diversity import MS_SSIM_WEIGHTS, MSSSIMDiversityMetric, ms_ssim, ms_ssim_pairs, ms_ssim_settings
from .evaluation import EVALUATION_METRICS, METRIC_DEFINITIONS, default_metrics, describe_evaluation, evaluate
from .frechet import (
    FeatureClassifier,
    FrechetDistanceMetric,
    classifier_accuracy,
    frechet_distance,
    train_feature_classifier,
)
from .likelihood import (
    PIXEL_LIKELIHOODS,
    ELBOMetric,
    GVAELikelihood,
    ImportanceWeightedBoundMetric,
    elbo,
    fit_pixel_scale,
    gaussian_log_density,
    importance_weighted_bound,
    kl_to_prior,
    pixel_log_likelihood,
)
from .memorization import closest_pairs_grid, memorization_report, nearest_neighbours, save_closest_pairs
from .mmd import (
    DEFAULT_BANDWIDTH_SCALES,
    GaussianMMDMetric,
    LinearMMDMetric,
    WholeSetGaussianMMDMetric,
    gaussian_mmd,
    linear_mmd,
    median_heuristic,
)
from .sharpness import SharpnessRatioMetric, mean_gradient_magnitude, sharpness_ratio

__all__ = [
    "DEFAULT_BANDWIDTH_SCALES",
    "GaussianMMDMetric",
    "LinearMMDMetric",
    "WholeSetGaussianMMDMetric",
    "gaussian_mmd",
    "linear_mmd",
    "median_heuristic",
    "MS_SSIM_WEIGHTS",
    "MSSSIMDiversityMetric",
    "ms_ssim",
    "ms_ssim_pairs",
    "ms_ssim_settings",
    "PIXEL_LIKELIHOODS",
    "ELBOMetric",
    "GVAELikelihood",
    "ImportanceWeightedBoundMetric",
    "elbo",
    "fit_pixel_scale",
    "gaussian_log_density",
    "importance_weighted_bound",
    "kl_to_prior",
    "pixel_log_likelihood",
    "FeatureClassifier",
    "FrechetDistanceMetric",
    "classifier_accuracy",
    "frechet_distance",
    "train_feature_classifier",
    "closest_pairs_grid",
    "memorization_report",
    "nearest_neighbours",
    "save_closest_pairs",
    "SharpnessRatioMetric",
    "mean_gradient_magnitude",
    "sharpness_ratio",
    "EVALUATION_METRICS",
    "METRIC_DEFINITIONS",
    "default_metrics",
    "describe_evaluation",
    "evaluate",
]
