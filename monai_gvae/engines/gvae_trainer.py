"""``GVAETrainer``: the single training loop of GVAE and its baselines (VAE, WGAN-GP, VAE-GAN, alpha-GAN)."""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from monai.engines import Trainer
from monai.engines.utils import default_metric_cmp_fn, default_prepare_batch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer

from monai_gvae.losses import (
    CriticLoss,
    EncoderGeneratorLoss,
    FeatureMatchingLoss,
    SegmentationConsistencyLoss,
    SegmentationGradientMatchingLoss,
)
from monai_gvae.networks.nets.gvae import LOGVAR_CLAMP, GVAE, reparameterize
from monai_gvae.utils import check_bool

from .utils import LOSS_KEYS, split_condition
from .utils import GVAEKeys as K

__all__ = ["GVAETrainer", "OBJECTIVES", "SEG_OBJECTIVES", "NonFiniteLossError", "unwrap"]

SEG_OBJECTIVES = ("consistency", "gradient_matching")
"""How a segmenter drives a label-conditioned generator (``GVAETrainer(seg_objective=...)``)."""

OBJECTIVES = ("gvae", "vae", "wgan_gp", "vaegan", "alpha_gan")

# entries of GVAETrainer.state_dict() beside Ignite's engine state
_EMA, _SCALERS, _GENERATORS, _SCHEDULE = "generator_ema", "grad_scalers", "random_generators", "loss_schedule"
_CODE_CRITIC = "code_critic"  # alpha-GAN's code critic and its optimiser (objective "alpha_gan" only)
_SCALER_NAMES = ("scaler_g", "scaler_d")  # the attributes holding the generator's and the critic's GradScaler


class NonFiniteLossError(FloatingPointError):
    """A loss term, or the input batch, became NaN or Inf during training."""


def unwrap(module: nn.Module | None) -> nn.Module | None:
    """The module inside a ``DistributedDataParallel``/``DataParallel``/compiled wrapper."""
    while module is not None and hasattr(module, "module") and isinstance(module.module, nn.Module):
        module = module.module
    return getattr(module, "_orig_mod", module)


class GVAETrainer(Trainer):
    """Trains a GVAE (encoder + generator against a WGAN-GP critic) on PyTorch-Ignite through MONAI's engine.

    One iteration = ``n_critic`` critic steps on detached fakes (reconstructions ``G(z_e)`` and prior samples
    ``G(z_p)``), then one encoder+generator step on ``w_rec * L1 + w_kl * KL - w_adv * E[D(fakes)]``.
    The baselines are the same loop with terms switched off by ``objective``:

    * ``"gvae"``: encoder, generator and critic (the paper's model).
    * ``"vae"``: encoder and generator, no critic, no adversarial term (``critic`` may be ``None``).
    * ``"wgan_gp"``: generator and critic on prior samples only, no encoder, no reconstruction/KL.
    * ``"vaegan"``: VAE-GAN (Larsen et al. 2016): GVAE with the pixel L1 replaced by ``feature_matching_loss``, the
      error between the critic's intermediate features of ``x`` and of ``G(z_e)``
      (:class:`~monai_gvae.losses.FeatureMatchingLoss`). The discriminator is the same Wasserstein critic with
      gradient penalty (not Larsen et al.'s sigmoid GAN), so that only the reconstruction loss differs from GVAE.
    * ``"alpha_gan"``: alpha-GAN (Rosca et al. 2017) in the WGAN-GP form of Kwon et al. 2019: a deterministic
      encoder (the encoder's mean; its log-variance head is not used), a ``code_critic`` (e.g.
      :class:`~monai_gvae.networks.CodeCritic`) trained on prior latents ``z ~ N(0, I)`` (real) against ``E(x)``
      (fake) with a gradient penalty on latent interpolates, replacing the KL term (the encoder-generator loss gets
      ``w_code * (-E[C(E(x))])`` instead); the image critic on reconstructions and prior samples and the L1
      reconstruction as in GVAE. The code critic takes its step right after each image-critic step.

    ``engine.state.output`` holds floats ``loss_d``, ``loss_g``, ``loss_rec``, ``loss_kl``, ``loss_adv``, ``gp``,
    ``wasserstein``, ``kl_weight``, ``loss_seg`` and alpha-GAN's ``loss_code``, ``loss_code_critic`` and ``code_gp``
    (terms an objective does not use are 0.0), plus the detached input batch
    (``"image"``, also as ``"label"``, the reconstruction target) and its reconstruction (``"pred"``) for metrics;
    the keys are :class:`~monai_gvae.engines.GVAEKeys`.

    :meth:`state_dict` holds what the trainer owns (Ignite's engine state, the EMA generator, the gradient scalers,
    the latent generator, the KL warm-up's weight, and for alpha-GAN the code critic and its optimiser), so that
    checkpoint handlers save and restore it as one entry.

    A label-conditioned GVAE (``GVAE(condition_channels=C)``, critic ``GVAECritic(condition_channels=C)``) trains
    with the same loop: the batch's last ``C`` channels are the condition ``c`` (with ``PackImageLabeld`` the
    one-hot label channels after the image), the first ones the model's input ``x``. Encoder, generator and
    critic get ``c``; prior samples are drawn for the batch's own conditions, so the critic learns to reject
    images that do not fit their label maps. ``image``/``label`` in the output are ``x`` only.

    Networks may be wrapped in ``DistributedDataParallel`` (see the bundles' ``multi_gpu_train.yaml``): each
    network is called once per step on a concatenated batch, so DDP sees one forward per backward. Checkpoint
    the unwrapped ``GVAE``, not the wrappers.

    Args:
        device: device to train on.
        max_epochs: number of epochs.
        train_data_loader: loader of dicts; ``prepare_batch`` extracts the input batch (image + label
            channels, in [-1, 1]; see ``monai_gvae.transforms.PackImageLabeld``).
        network: the ``GVAE`` (encoder + generator). Its parts are trained unless ``encoder``/``generator``
            are given (e.g. DDP wrappers of ``network.encoder`` / ``network.generator``).
        critic: the critic (``GVAECritic``), possibly DDP-wrapped; ``None`` for ``objective="vae"``.
        optimizer: optimiser of encoder + generator parameters.
        critic_optimizer: optimiser of the critic's parameters; ``None`` for ``objective="vae"``.
        loss_function: the encoder-generator objective; default ``EncoderGeneratorLoss()``.
        critic_loss_function: the critic objective; default ``CriticLoss(gp_weight=10)``.
        code_critic: alpha-GAN's critic of latent vectors (:class:`~monai_gvae.networks.CodeCritic`), possibly
            DDP-wrapped; only for ``objective="alpha_gan"``, which needs it (``None`` otherwise).
        code_critic_optimizer: optimiser of the code critic's parameters (``objective="alpha_gan"`` only).
        code_critic_loss_function: the code critic's objective (Wasserstein loss, gradient penalty on latent
            interpolates); default ``CriticLoss(gp_weight=10)``.
        feature_matching_loss: VAE-GAN's reconstruction loss; default ``FeatureMatchingLoss()`` (the critic's
            second-deepest feature map, relative mean squared error). Used by ``objective="vaegan"`` only (ignored
            otherwise).
        objective: one of :data:`OBJECTIVES`: ``"gvae"``, ``"vae"``, ``"wgan_gp"``, ``"vaegan"`` or ``"alpha_gan"``.
        n_critic: critic steps per encoder-generator step (the same real batch, fresh fakes each step).
        encoder: overrides ``network.encoder`` (a DDP wrapper of it).
        generator: overrides ``network.generator`` (a DDP wrapper of it).
        seed: seed of the trainer's own ``torch.Generator`` for latents, reparameterisation noise and
            gradient-penalty interpolation; the process rank is added so that DDP ranks draw different latents.
            ``None`` draws from torch's global generator.
        ema_decay: keep an exponential moving average of the generator (``self.generator_ema``) with this decay.
        check_finite: raise :class:`NonFiniteLossError` naming the iteration and the term when the input or a
            loss becomes NaN/Inf (no optimiser step is taken with such a loss).
        amp: mixed precision (autocast): float16 with gradient scaling on CUDA, bfloat16 on CPU.
        amp_dtype: override the autocast dtype.
        critic_chunk_size: run the critic step over chunks of this many items: the gradient penalty (see
            :func:`~monai_gvae.losses.gradient_penalty`) and the scores of reals and fakes, each chunk
            back-propagated before the next, so that the critic step's memory scales with the chunk instead of
            the batch (for 3D volumes, where the penalty's double backward is the step's peak; with
            ``gradient_checkpointing`` for the encoder-generator step's). Same updates up to the order of
            floating-point sums; slower for small images. ``None`` (default): the whole batch at once. Needs a
            critic without BatchNorm (chunks would change its batch statistics) that is not DDP-wrapped.
        float_outputs: convert the loss terms of ``engine.state.output`` to Python floats every iteration (one
            host-device synchronisation per iteration on a GPU). ``False`` leaves them as detached 0-d tensors so
            that the loop never waits for the GPU; handlers read them with ``float()`` (``loss_terms`` does) only
            when they log. Terms an objective does not use are 0.0 either way.
        segmenter: a segmentation network trained on the real labelled pairs, for a label-conditioned GVAE: it
            segments every generated image (reconstructions and prior samples) in the encoder-generator step, and
            ``seg_weight`` times its DiceCE against the label map the image was generated for is added to the
            loss (:class:`~monai_gvae.losses.SegmentationConsistencyLoss`; GenSeg's idea, simplified), so that
            generated images carry the boundaries their labels claim. The segmenter is frozen and never trained;
            the critic step does not use it. Output key ``loss_seg``.
        seg_weight: the segmentation-consistency weight (``> 0`` with a ``segmenter``).
        seg_input_range: intensity range the segmenter was trained on (generated images are mapped to it).
        seg_objective: how the segmenter drives the generator: ``"consistency"`` (above) or ``"gradient_matching"``
            (:class:`~monai_gvae.losses.SegmentationGradientMatchingLoss`: the generated images' segmentation-loss
            gradient in the segmenter's weights must point where the real images' of the same label maps does,
            GenSeg's bi-level objective to first order; a copy of the segmenter keeps training on the real and
            generated pairs with Adam at ``seg_lr``, the network given is not modified).
        seg_lr: ``"gradient_matching"``: the segmenter copy's learning rate (0: fixed).
        epoch_length, non_blocking, prepare_batch, iteration_update, postprocessing, key_train_metric,
        additional_metrics, metric_cmp_fn, train_handlers, event_names, event_to_attr, decollate,
        optim_set_to_none, to_kwargs, amp_kwargs: as in ``monai.engines.SupervisedTrainer``.

    Raises:
        ValueError: unknown objective, a network/optimiser the objective needs is missing (or a code critic given to
            an objective other than ``"alpha_gan"``, or for ``"vaegan"`` a critic without ``features``), a
            ``critic_chunk_size`` that is not a positive integer or does not fit the critic, or a ``segmenter``
            without a label-conditioned generator (or ``seg_weight <= 0``).
        TypeError: ``amp``, ``non_blocking``, ``check_finite`` or ``float_outputs`` is not a bool (a string such as
            ``"false"`` included: convert command-line text where it enters).

    Example::

        gvae = GVAE(spatial_dims=2, in_channels=1, image_size=32, latent_size=16)
        critic = GVAECritic(spatial_dims=2, in_channels=1, image_size=32)
        trainer = GVAETrainer(
            device="cpu", max_epochs=1, train_data_loader=loader, network=gvae, critic=critic,
            optimizer=torch.optim.Adam(gvae.parameters(), 1e-4),
            critic_optimizer=torch.optim.Adam(critic.parameters(), 1e-4),
        )
        trainer.run()
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: GVAE | None = None,
        critic: nn.Module | None = None,
        optimizer: Optimizer | None = None,
        critic_optimizer: Optimizer | None = None,
        loss_function: EncoderGeneratorLoss | None = None,
        critic_loss_function: CriticLoss | None = None,
        code_critic: nn.Module | None = None,
        code_critic_optimizer: Optimizer | None = None,
        code_critic_loss_function: CriticLoss | None = None,
        feature_matching_loss: FeatureMatchingLoss | None = None,
        objective: str = "gvae",
        n_critic: int = 1,
        encoder: nn.Module | None = None,
        generator: nn.Module | None = None,
        seed: int | None = None,
        ema_decay: float | None = None,
        check_finite: bool = True,
        amp: bool = False,
        amp_dtype: torch.dtype | str | None = None,
        float_outputs: bool = True,
        critic_chunk_size: int | None = None,
        segmenter: nn.Module | None = None,
        seg_weight: float = 0.0,
        seg_input_range: tuple[float, float] = (0.0, 1.0),
        seg_objective: str = "consistency",
        seg_lr: float = 1e-4,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable | None = None,
        postprocessing: Callable | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = False,
        optim_set_to_none: bool = True,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
    ) -> None:
        # typed values only: a string ("false" is truthy) is refused; bundles convert command-line text beforehand
        amp, non_blocking = check_bool(amp, "amp"), check_bool(non_blocking, "non_blocking")
        check_finite = check_bool(check_finite, "check_finite")
        float_outputs = check_bool(float_outputs, "float_outputs")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            postprocessing=postprocessing,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            handlers=train_handlers,
            amp=amp,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        # alpha-GAN's code critic, checked with the other networks against the objective
        self.code_critic, self.code_critic_optimizer = code_critic, code_critic_optimizer
        self._set_networks(objective, n_critic, network, encoder, generator, critic, optimizer, critic_optimizer)
        self.critic_chunk_size = _check_critic_chunk_size(critic_chunk_size, critic, self.penalty_first)
        self.loss_function = loss_function if loss_function is not None else EncoderGeneratorLoss()
        self.critic_loss_function = critic_loss_function if critic_loss_function is not None else CriticLoss()
        self.code_critic_loss_function = (
            code_critic_loss_function if code_critic_loss_function is not None else CriticLoss()
        )
        self.feature_matching_loss = feature_matching_loss if feature_matching_loss is not None else FeatureMatchingLoss()
        self.logvar_clamp = tuple(network.config["logvar_clamp"]) if network is not None else LOGVAR_CLAMP
        self.latent_size = unwrap(self.generator).latent_size
        self.condition_channels = self._check_condition_channels()
        self.seg_loss_function = self._segmentation_term(
            segmenter, seg_weight, seg_input_range, device, seg_objective, seg_lr
        )
        self.check_finite = check_finite
        self._host_terms: dict[str, float] = {}  # loss terms the finiteness checks read this iteration
        self.float_outputs = float_outputs
        self.optim_set_to_none = optim_set_to_none
        device = torch.device(device)
        self._setup_amp(amp_dtype, device)
        self.seed = seed
        self.latent_generator = _latent_generator(seed, device)
        self.generator_ema = self._make_generator_ema(ema_decay)
        # Freezing the critic during the generator step skips its weight gradients; DDP needs the same set of
        # parameters to require gradients in every backward, so a wrapped critic is left alone.
        self._freeze_critic_in_g_step = critic is not None and unwrap(critic) is critic
        self._freeze_code_critic_in_g_step = code_critic is not None and unwrap(code_critic) is code_critic

    def _set_networks(
        self,
        objective: str,
        n_critic: int,
        network: GVAE | None,
        encoder: nn.Module | None,
        generator: nn.Module | None,
        critic: nn.Module | None,
        optimizer: Optimizer | None,
        critic_optimizer: Optimizer | None,
    ) -> None:
        """The objective, the networks (``encoder``/``generator`` default to ``network``'s) and the optimisers,
        checked against each other."""
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}.")
        self.objective = objective
        self.n_critic = n_critic
        self.network = network
        self.encoder = encoder if encoder is not None else (network.encoder if network is not None else None)
        self.generator = generator if generator is not None else (network.generator if network is not None else None)
        self.critic = critic
        # Back-propagate the gradient penalty on its own before the Wasserstein term's forward, so that the
        # penalty's double-backward graph and the scores' graph are never alive together: the same gradients
        # (accumulated), -33 % peak memory for the gvae_brain3d network (3D 64^3 conv, batch 4). DDP allows one
        # backward per forward of the wrapped critic, so a DDP critic keeps a single backward.
        self.penalty_first = not isinstance(critic, DistributedDataParallel)
        self.optimizer = optimizer
        self.critic_optimizer = critic_optimizer
        self._check_networks()

    def _check_networks(self) -> None:
        needs = {
            "gvae": ("encoder", "generator", "critic", "optimizer", "critic_optimizer"),
            "vae": ("encoder", "generator", "optimizer"),
            "wgan_gp": ("generator", "critic", "optimizer", "critic_optimizer"),
            "vaegan": ("encoder", "generator", "critic", "optimizer", "critic_optimizer"),
            "alpha_gan": (
                "encoder", "generator", "critic", "optimizer", "critic_optimizer", "code_critic", "code_critic_optimizer"
            ),
        }[self.objective]
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"objective {self.objective!r} needs {', '.join(missing)}; pass network/critic/optimisers.")
        if self.objective != "alpha_gan" and (self.code_critic is not None or self.code_critic_optimizer is not None):
            raise ValueError(
                f"a code critic (and its optimiser) is used by objective 'alpha_gan' only, not {self.objective!r}: "
                "pass code_critic=None, code_critic_optimizer=None."
            )
        if self.objective == "vaegan" and not callable(getattr(unwrap(self.critic), "features", None)):
            raise ValueError(
                "objective 'vaegan' compares the critic's intermediate features of images and reconstructions: the "
                f"critic needs a features(x, condition, layer) method (GVAECritic), {type(unwrap(self.critic)).__name__} "
                "has none."
            )

    def _check_condition_channels(self) -> int:
        """The generator's condition channels (0: unconditional), checked against the critic's."""
        channels = int(getattr(unwrap(self.generator), "condition_channels", 0) or 0)
        if self.critic is not None:
            critic_channels = int(getattr(unwrap(self.critic), "condition_channels", 0) or 0)
            if critic_channels != channels:
                raise ValueError(
                    f"the generator takes {channels} condition channel(s) but the critic {critic_channels}; "
                    "build both with the same condition_channels."
                )
        return channels

    def _segmentation_term(
        self,
        segmenter: nn.Module | None,
        seg_weight: float,
        seg_input_range: tuple[float, float],
        device: str | torch.device,
        seg_objective: str = "consistency",
        seg_lr: float = 1e-4,
    ) -> SegmentationConsistencyLoss | SegmentationGradientMatchingLoss | None:
        """The segmentation term, checked against the generator (``None`` without a segmenter)."""
        if seg_objective not in SEG_OBJECTIVES:
            raise ValueError(f"seg_objective must be one of {SEG_OBJECTIVES}, got {seg_objective!r}.")
        if segmenter is None:
            if seg_weight:
                raise ValueError(f"seg_weight={seg_weight} needs a segmenter.")
            return None
        if not self.condition_channels:
            raise ValueError(
                "a segmenter (segmentation consistency) needs a label-conditioned generator (condition_channels > 0): "
                "the label map a generated image must show is its condition."
            )
        if not seg_weight > 0:
            raise ValueError(f"seg_weight must be > 0 with a segmenter, got {seg_weight}.")
        if seg_objective == "gradient_matching":
            return SegmentationGradientMatchingLoss(segmenter, seg_weight, seg_input_range, seg_lr).to(torch.device(device))
        return SegmentationConsistencyLoss(segmenter, seg_weight, input_range=seg_input_range).to(torch.device(device))

    def _setup_amp(self, amp_dtype: torch.dtype | str | None, device: torch.device) -> None:
        """The autocast dtype and the gradient scalers of the two steps (``self.amp`` is set by ``Trainer``)."""
        self.amp_dtype = _resolve_amp_dtype(amp_dtype, device)
        # GradScaler only matters for float16; bfloat16 has float32's range.
        use_scaler = self.amp and device.type == "cuda" and self.amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=use_scaler)

    def _make_generator_ema(self, ema_decay: float | None) -> torch.optim.swa_utils.AveragedModel | None:
        """An exponential moving average of the (unwrapped) generator, or ``None`` without ``ema_decay``."""
        if ema_decay is None:
            return None
        if not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}.")
        return torch.optim.swa_utils.AveragedModel(
            unwrap(self.generator),
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema_decay),
            use_buffers=True,
        )

    # --- the trainer's state, for checkpoints
    def random_generators(self) -> dict[str, torch.Generator]:
        """The trainer's own random generators by name (``{"latent_generator": ...}`` when seeded, else empty):
        what ``monai_gvae.handlers.capture_rng_state`` snapshots and a distributed resumption re-seeds."""
        return {"latent_generator": self.latent_generator} if self.latent_generator is not None else {}

    def state_dict(self) -> OrderedDict:
        """Everything the trainer owns that training changes: Ignite's engine state (``iteration``,
        ``epoch_length``, ``max_epochs``) and, beside it, the EMA generator, the two gradient scalers, the states of
        :meth:`random_generators` and the KL warm-up's weight at this iteration; for ``objective="alpha_gan"`` also the
        code critic's weights and its optimiser's state (``"code_critic"``: ``{"network", "optimizer"}``), so that a
        checkpoint handler given the usual networks and optimisers restores them too. The other objectives' states
        hold no such entry (they are as before).

        The Ignite keys stay at the top level, so MONAI's ``CheckpointSaver``/``CheckpointLoader`` and
        ``GVAECheckpointHandler`` save and load this dict as that of any engine, and ``ckpt["trainer"]["iteration"]``
        reads as before. Plain values and tensors only (``torch.load(weights_only=True)``).

        Returns:
            the state, for :meth:`load_state_dict`.

        Example::

            state = trainer.state_dict()
            other.load_state_dict(state)  # a trainer built the same way continues where this one is
        """
        state = super().state_dict()
        if self.generator_ema is not None:
            state[_EMA] = self.generator_ema.state_dict()
        # a disabled scaler (no float16 AMP) has an empty state
        state[_SCALERS] = {name: getattr(self, name).state_dict() for name in _SCALER_NAMES}
        state[_GENERATORS] = {name: gen.get_state() for name, gen in self.random_generators().items()}
        state[_SCHEDULE] = {"kl_weight": float(self.loss_function.kl_weight_at(self.state.iteration))}
        if self.code_critic is not None:
            state[_CODE_CRITIC] = {
                "network": unwrap(self.code_critic).state_dict(),
                "optimizer": self.code_critic_optimizer.state_dict(),
            }
        return state

    def owned_optimizers(self) -> list[Optimizer]:
        """The optimisers whose state :meth:`state_dict` holds (alpha-GAN's code critic's; empty for the other
        objectives): what a checkpoint handler adds to the optimisers it was given, e.g. to lower their learning
        rates on a rollback."""
        return [self.code_critic_optimizer] if self.code_critic is not None else []

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Load :meth:`state_dict` (also a plain Ignite engine state: the parts it lacks keep their values, with a
        warning).

        Args:
            state_dict: a state from :meth:`state_dict`.

        Raises:
            ValueError: the Ignite part is incomplete, or a part does not fit this trainer (e.g. another generator).

        Example::

            trainer.load_state_dict(torch.load("model.pt", weights_only=True)["trainer"])
        """
        super().load_state_dict(state_dict)
        kept: list[str] = []  # parts this trainer has and the state lacks
        ema = state_dict.get(_EMA)
        if self.generator_ema is not None and ema is not None:
            self.generator_ema.load_state_dict(ema)
        elif self.generator_ema is not None:
            kept.append(_EMA)
        elif ema is not None:
            self.logger.warning("the trainer state holds an EMA generator, this trainer keeps none (ema_decay=None): ignored")
        scalers = state_dict.get(_SCALERS, {})
        for name in _SCALER_NAMES:
            scaler = getattr(self, name)
            if scalers.get(name):  # empty: saved from a disabled scaler
                scaler.load_state_dict(scalers[name])
            elif scaler.is_enabled():
                kept.append(name)
        generators = state_dict.get(_GENERATORS, {})
        for name, gen in self.random_generators().items():
            if name in generators:
                gen.set_state(generators[name].cpu())  # map_location may have moved the state to the GPU
            else:
                kept.append(name)
        code_critic = state_dict.get(_CODE_CRITIC)
        if self.code_critic is not None and code_critic is not None:
            unwrap(self.code_critic).load_state_dict(code_critic["network"])
            self.code_critic_optimizer.load_state_dict(code_critic["optimizer"])
        elif self.code_critic is not None:
            kept.append(_CODE_CRITIC)
        elif code_critic is not None:
            self.logger.warning("the trainer state holds a code critic (alpha_gan), this trainer has none: ignored")
        if kept:
            self.logger.warning(
                f"the trainer state has no {', '.join(kept)} (a plain engine state or an older checkpoint): "
                "kept as they are, so the resumed run is not an exact continuation."
            )
        saved_weight = state_dict.get(_SCHEDULE, {}).get("kl_weight")
        weight = float(self.loss_function.kl_weight_at(self.state.iteration))
        if saved_weight is not None and not math.isclose(saved_weight, weight, rel_tol=1e-6, abs_tol=1e-12):
            self.logger.warning(
                f"the KL weight at iteration {self.state.iteration} was {saved_weight:g} in the saved run and is "
                f"{weight:g} here (another kl_weight or kl_warmup_iterations): the loss schedule changes on resuming."
            )

    def describe(self) -> dict[str, dict[str, Any]]:
        """The set-up of this run as plain values, for the record a checkpoint keeps: ``{"trainer": objective,
        n_critic, seed, amp, check_finite, batch_size and the loss functions' weights, "network": the GVAE's
        config}``.

        Example::

            trainer.describe()["trainer"]["loss_function"]["kl_warmup_iterations"]
        """
        trainer: dict[str, Any] = {}
        for attr in ("objective", "n_critic", "seed", "amp", "check_finite"):
            value = getattr(self, attr, None)
            if isinstance(value, (bool, int, float, str)):
                trainer[attr] = value
        if self.seg_loss_function is not None:
            trainer["seg_weight"] = self.seg_loss_function.weight
            trainer["seg_objective"] = self.seg_loss_function.objective
        if isinstance(getattr(self.data_loader, "batch_size", None), int):
            trainer["batch_size"] = self.data_loader.batch_size
        for attr in ("loss_function", "critic_loss_function"):
            trainer[attr] = _plain_settings(getattr(self, attr))
        if self.objective == "vaegan":
            trainer["feature_matching_loss"] = _plain_settings(self.feature_matching_loss)
        if self.code_critic is not None:
            trainer["code_critic_loss_function"] = _plain_settings(self.code_critic_loss_function)
        network = unwrap(self.network)
        return {"trainer": trainer, "network": dict(getattr(network, "config", {}) or {})}

    def run(self) -> None:  # type: ignore[override]
        """Run training; calling it again continues from the current state (as ``Trainer.run``)."""
        # Trainer.run would install a CUDA GradScaler whenever amp is set; the scalers are made in __init__.
        super(Trainer, self).run()

    # --- random draws through the trainer's generator
    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.latent_generator, device=self.state.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        # without amp no context at all: entering and leaving a disabled torch.autocast costs about 20 us, and the
        # step enters it five times
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.state.device.type, dtype=self.amp_dtype)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(model input, condition)`` of a batch: the condition is the last ``condition_channels`` channels."""
        return split_condition(x, self.condition_channels, getattr(unwrap(self.generator), "out_channels", None))

    @staticmethod
    def _repeat(t: torch.Tensor | None, times: int) -> torch.Tensor | None:
        """``t`` repeated ``times`` times along the batch (``None`` stays ``None``)."""
        return t if t is None or times == 1 else t.repeat(times, *([1] * (t.ndim - 1)))

    def _call(self, net: nn.Module, x: torch.Tensor, condition: torch.Tensor | None) -> Any:
        return net(x) if condition is None else net(x, condition)

    def _fakes(
        self, x: torch.Tensor, with_grad: bool, condition: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Fakes for the critics/generator: ``[G(z_e), G(z_p)]`` (gvae, vaegan, alpha_gan), ``G(z_e)`` (vae) or
        ``G(z_p)`` (wgan_gp); alpha-GAN's encoder is deterministic: ``z_e = mu``.

        Returns ``(fakes, mu, logvar)``; the first ``len(x)`` fakes are reconstructions except for wgan_gp; ``logvar``
        is ``None`` for alpha_gan (no posterior variance). A conditional model's fakes are made for the batch's
        conditions (repeated for each group of fakes).
        """
        batch = x.shape[0]
        mu = logvar = None
        latents = []
        with torch.set_grad_enabled(with_grad), self._autocast():
            if self.objective == "alpha_gan":
                mu, _ = self._call(self.encoder, x, condition)
                latents.append(mu)
            elif self.objective != "wgan_gp":
                mu, logvar = self._call(self.encoder, x, condition)
                logvar = logvar.clamp(*self.logvar_clamp)
                latents.append(reparameterize(mu, logvar, self.latent_generator))
            if self.objective != "vae":
                latents.append(self._randn(batch, self.latent_size))
            # One generator call on the concatenated latents: one forward per backward for DDP, and a
            # larger, faster batch.
            cond = self._repeat(condition, len(latents))
            fakes = self._call(self.generator, torch.cat(latents).to(x.dtype), cond)
        return fakes, mu, logvar

    def _critic_step(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One critic update on fresh detached fakes. Three ways to back-propagate, all to the same gradients (up to
        the order of sums): the penalty first, then the Wasserstein term (the default: the two graphs are never
        alive together); with ``critic_chunk_size``, both chunk by chunk (least memory); or one joint backward of
        both (a DDP critic, which allows one backward per forward)."""
        fakes, codes, _ = self._fakes(x, with_grad=False, condition=condition)
        times = fakes.shape[0] // x.shape[0]
        fake_cond = self._repeat(condition, times)
        self.critic_optimizer.zero_grad(set_to_none=self.optim_set_to_none)

        def backward(term: torch.Tensor) -> None:
            self.scaler_d.scale(term).backward()

        chunk = self.critic_chunk_size
        # The penalty runs outside autocast: a float16 gradient norm can overflow. A conditional critic is
        # penalised on interpolated images under their (shared) condition.
        penalty_first = self.penalty_first
        if penalty_first:  # see __init__; the penalty (or each chunk of it) is back-propagated right away
            weight = self.critic_loss_function.gp_weight
            gp = self.critic_loss_function.penalty(
                self.critic, x, fakes, self.latent_generator, fake_cond, chunk, lambda term: backward(weight * term)
            ).detach()
        if chunk:
            real_scores, fake_scores = self._chunked_scores(x, fakes, condition, fake_cond, chunk, backward)
        else:
            with self._autocast():
                all_cond = None if condition is None else torch.cat([condition, fake_cond])
                scores = self._call(self.critic, torch.cat([x, fakes]), all_cond)
            real_scores, fake_scores = scores[: x.shape[0]], scores[x.shape[0] :]
        if not penalty_first:
            gp = self.critic_loss_function.penalty(self.critic, x, fakes, self.latent_generator, fake_cond)
        terms = self.critic_loss_function(real_scores, fake_scores, gp)
        loss = terms["loss"]
        self._guard({K.LOSS_D: loss, K.GP: gp, K.WASSERSTEIN: terms["wasserstein"]}, "critic")
        if not chunk:
            # with penalty_first, gp is detached here: this backward adds the Wasserstein term's gradients
            backward(loss)
        self.scaler_d.step(self.critic_optimizer)
        self.scaler_d.update()
        out = {K.LOSS_D: loss.detach(), K.GP: gp.detach(), K.WASSERSTEIN: terms["wasserstein"].detach()}
        if self.code_critic is not None:
            out.update(self._code_critic_step(codes))
        return out

    def _code_critic_step(self, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update of alpha-GAN's code critic: prior latents ``z ~ N(0, I)`` (real) against the encoder's detached
        codes (fake), ``E[C(E(x))] - E[C(z)] + gp_weight * GP`` with the penalty on random interpolates between the
        two (:func:`~monai_gvae.losses.gradient_penalty` on latent vectors). In float32 without autocast or gradient
        scaling (a small MLP on vectors); one backward of both terms (also for a DDP-wrapped code critic)."""
        codes = codes.detach().float()
        prior = self._randn(codes.shape[0], self.latent_size)
        self.code_critic_optimizer.zero_grad(set_to_none=self.optim_set_to_none)
        scores = self.code_critic(torch.cat([prior, codes]))
        real_scores, fake_scores = scores[: codes.shape[0]], scores[codes.shape[0] :]
        gp = self.code_critic_loss_function.penalty(self.code_critic, prior, codes, self.latent_generator)
        terms = self.code_critic_loss_function(real_scores, fake_scores, gp)
        self._guard({K.LOSS_CODE_CRITIC: terms["loss"], K.CODE_GP: gp}, "code critic")
        terms["loss"].backward()
        self.code_critic_optimizer.step()
        return {K.LOSS_CODE_CRITIC: terms["loss"].detach(), K.CODE_GP: gp.detach()}

    def _chunked_scores(
        self,
        x: torch.Tensor,
        fakes: torch.Tensor,
        condition: torch.Tensor | None,
        fake_cond: torch.Tensor | None,
        chunk: int,
        backward: Callable[[torch.Tensor], None],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score reals and fakes ``chunk`` items at a time, back-propagating each chunk's share of the Wasserstein
        loss ``E[D(fake)] - E[D(real)]`` at once (no concatenated batch, one chunk's graph alive at a time).
        Returns the detached real and fake scores (for the loss value and the finiteness check)."""
        scored = []
        for items, cond, sign in ((x, condition, -1.0), (fakes, fake_cond, 1.0)):
            scores = []
            for start in range(0, items.shape[0], chunk):
                part = None if cond is None else cond[start : start + chunk]
                with self._autocast():
                    s = self._call(self.critic, items[start : start + chunk], part)
                backward(s.float().sum() * (sign / items.shape[0]))
                scores.append(s.detach())
            scored.append(torch.cat(scores))
        return scored[0], scored[1]

    def _generator_step(
        self, x: torch.Tensor, iteration: int, condition: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=self.optim_set_to_none)
        fakes, mu, logvar = self._fakes(x, with_grad=True, condition=condition)
        recon = fakes[: x.shape[0]] if self.objective != "wgan_gp" else None
        fake_scores = None
        fake_cond = self._repeat(condition, fakes.shape[0] // x.shape[0])
        # the critics are frozen in this step (no weight gradients), except DDP-wrapped ones (see __init__)
        frozen = [net for net, freeze in ((self.critic, self.objective != "vae" and self._freeze_critic_in_g_step),
                                          (self.code_critic, self._freeze_code_critic_in_g_step)) if freeze]
        try:
            for net in frozen:
                net.requires_grad_(False)
            if self.objective != "vae":
                with self._autocast():
                    fake_scores = self._call(self.critic, fakes, fake_cond)
            extra: dict[str, torch.Tensor] = {}  # only when used: a loss_function with the older signature still works
            if self.objective == "vaegan":  # the critic's features instead of pixels (gradients through recon only)
                with self._autocast():
                    extra["reconstruction"] = self.feature_matching_loss(unwrap(self.critic), recon, x, condition)
            if self.code_critic is not None:  # alpha-GAN: the code critic's scores replace the KL term
                extra["code_scores"] = self.code_critic(mu.float())
            terms = self.loss_function(
                x if recon is not None else None, recon, mu if logvar is not None else None, logvar, fake_scores,
                iteration=iteration, **extra,
            )
            if self.seg_loss_function is not None:
                with self._autocast():
                    reals = (x, condition) if self.seg_loss_function.needs_real_images else ()
                    terms = {**terms, "seg": self.seg_loss_function(fakes, fake_cond, *reals)}
                terms["loss"] = terms["loss"] + terms["seg"]
            self._guard(_generator_terms(terms), "encoder-generator")
            self.scaler_g.scale(terms["loss"]).backward()
            self.scaler_g.step(self.optimizer)
            self.scaler_g.update()
            if self.seg_loss_function is not None:
                self.seg_loss_function.segmenter_step()
        finally:
            # unfreeze even when a guard raised: a run resumed or rolled back in this process must train the critics
            for net in frozen:
                net.requires_grad_(True)
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(unwrap(self.generator))
        out: dict[str, torch.Tensor] = {k: v.detach() for k, v in _generator_terms(terms).items()}
        out[K.PRED] = recon.detach() if recon is not None else fakes.detach()
        return out

    def _guard(self, terms: dict[str, torch.Tensor], step: str) -> None:
        """Raise before the optimiser step if a term is NaN/Inf. The terms are read to the host in one copy (one
        device synchronisation), and kept in ``self._host_terms`` so that the float outputs need not read them
        again."""
        if not self.check_finite:
            return
        values = torch.stack([t.detach().float().reshape(()) for t in terms.values()]).tolist()
        self._host_terms.update(zip(terms, values))
        if not all(math.isfinite(v) for v in values):
            bad = [name for name, v in zip(terms, values) if not math.isfinite(v)]
            raise NonFiniteLossError(
                f"non-finite {', '.join(bad)} in the {step} step at iteration {self.state.iteration} "
                f"(epoch {self.state.epoch}); no optimiser step was taken with it."
            )

    def _check_input(self, x: torch.Tensor) -> None:
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                f"input batch at iteration {self.state.iteration} contains NaN or Inf values "
                f"(shape {tuple(x.shape)}); check the data and the intensity transforms."
            )

    def _iteration(self, engine: GVAETrainer, batchdata: dict | Sequence) -> dict[str, Any]:
        """One GVAE iteration: ``n_critic`` critic steps, then one encoder-generator step."""
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        engine._host_terms = {}
        # the input is checked on the host, before the copy to the device (no device synchronisation), when the
        # default prepare_batch only copies it; otherwise what prepare_batch returns is checked
        host_batch = _host_image(batchdata) if engine.prepare_batch is default_prepare_batch else None
        if engine.check_finite and host_batch is not None:
            engine._check_input(host_batch)
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        x = torch.as_tensor(x)
        if engine.check_finite and host_batch is None:
            engine._check_input(x)
        x, condition = engine._split(x)
        for net in (engine.encoder, engine.generator, engine.critic, engine.code_critic):
            # an evaluator may have left them in eval mode; train() walks every submodule (0.5 ms an iteration for
            # the three networks), so only when the network is not in training mode (the module inside a DDP or
            # compiled wrapper: an evaluator switches that one, not the wrapper)
            if net is not None and not unwrap(net).training:
                net.train()
        output: dict[str, Any] = {}
        if engine.objective != "vae":
            for _ in range(engine.n_critic):
                output.update(engine._critic_step(x, condition))
        output.update(engine._generator_step(x, engine.state.iteration, condition))
        output[K.KL_WEIGHT] = engine.loss_function.kl_weight_at(engine.state.iteration)
        present = [key for key in LOSS_KEYS if output.get(key) is not None]
        if engine.float_outputs and present:
            # the finiteness checks have read their terms to the host already; one copy for any others
            host = engine._host_terms
            missing = [key for key in present if key not in host]
            if missing:
                host.update(zip(missing, torch.stack([output[key].float().reshape(()) for key in missing]).tolist()))
            output.update((key, host[key]) for key in present)
        for key in LOSS_KEYS:
            if output.get(key) is None:
                output[key] = 0.0
        output[K.IMAGE] = x
        output[K.LABEL] = x
        return output


def _host_image(batchdata: Any) -> torch.Tensor | None:
    """The batch's image tensor while it is still in host memory (as the DataLoader returns it), else ``None``."""
    image = batchdata.get(K.IMAGE) if isinstance(batchdata, dict) else None
    return image if isinstance(image, torch.Tensor) and image.device.type == "cpu" else None


def _generator_terms(terms: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder-generator loss's terms under the trainer's output keys."""
    out = {K.LOSS_G: terms["loss"], K.LOSS_REC: terms["rec"], K.LOSS_KL: terms["kl"], K.LOSS_ADV: terms["adv"]}
    if "seg" in terms:
        out[K.LOSS_SEG] = terms["seg"]
    if "code" in terms:
        out[K.LOSS_CODE] = terms["code"]
    return out


def _latent_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """The trainer's generator for latents, noise and interpolation: seeded with ``seed`` plus the process rank (DDP
    ranks draw different latents); ``None`` without a seed (torch's global generator)."""
    if seed is None:
        return None
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    return torch.Generator(device=device).manual_seed(int(seed) + rank)


def _plain_settings(obj: Any) -> dict[str, Any]:
    """The public attributes of ``obj`` that are plain numbers, booleans or strings (a loss function's weights)."""
    settings = vars(obj) if hasattr(obj, "__dict__") else {}
    return {k: v for k, v in settings.items() if not k.startswith("_") and isinstance(v, (bool, int, float, str))}


def _check_critic_chunk_size(chunk_size: Any, critic: nn.Module | None, penalty_first: bool) -> int | None:
    """``chunk_size`` (an int or ``None``; bundles convert command-line text beforehand), checked against the critic."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"critic_chunk_size must be a positive integer or None, got {chunk_size!r}.")
    if critic is None:
        return chunk_size  # nothing to penalise (objective "vae")
    if not penalty_first:
        raise ValueError(
            "critic_chunk_size needs a critic that is not wrapped in DistributedDataParallel: DDP allows one "
            "backward per forward, and each chunk is back-propagated on its own."
        )
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in unwrap(critic).modules()):
        raise ValueError(
            "critic_chunk_size needs a critic without BatchNorm: each chunk would be normalised with its own "
            "batch statistics, which changes the scores and the penalty (GVAECritic's default norm=None has none)."
        )
    return chunk_size


def _resolve_amp_dtype(amp_dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    if amp_dtype is None:
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    if isinstance(amp_dtype, str):
        try:
            return {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}[amp_dtype]
        except KeyError as e:
            raise ValueError(f"amp_dtype must be float16 or bfloat16, got {amp_dtype!r}.") from e
    return amp_dtype
