"""What the bundles' adaptation configs need: starting a network from a pre-trained checkpoint safely."""

from __future__ import annotations

import os

from torch import nn

from monai_gvae.networks.pretrained import load_pretrained_weights

__all__ = ["load_pretrained"]


def load_pretrained(
    pretrained: str | os.PathLike,
    output_dir: str | os.PathLike,
    networks: dict[str, nn.Module],
) -> dict[str, dict[str, list[str]]]:
    """Initialise the networks of an adaptation run from a pre-training checkpoint.

    The adaptation run writes its own ``model.pt`` and ``checkpoint_*.pt`` into ``output_dir``; to never
    overwrite the checkpoint it starts from, ``pretrained`` must not lie in ``output_dir``.

    Args:
        pretrained: the pre-training run's checkpoint (``CheckpointSaver`` dict, e.g. its ``model.pt``).
        output_dir: where the adaptation run writes.
        networks: checkpoint entry -> network, e.g. ``{"gvae": gvae, "critic": critic}``; loaded with
            :func:`~monai_gvae.networks.load_pretrained_weights` (channels grown for labels or conditions).

    Returns:
        the load report of each network.

    Raises:
        FileNotFoundError: no ``pretrained`` file.
        ValueError: ``pretrained`` inside ``output_dir``, or a checkpoint that does not fit.

    Example::

        load_pretrained("models/pretrained/model.pt", "models/adapted", {"gvae": gvae, "critic": critic})
    """
    path = os.path.abspath(os.fspath(pretrained))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"pretrained checkpoint not found: {path} (run the pre-training config first, or pass --pretrained PATH)."
        )
    if os.path.dirname(path) == os.path.abspath(os.fspath(output_dir)):
        raise ValueError(
            f"the pretrained checkpoint {path} lies in the adaptation's output_dir, whose model.pt and "
            "checkpoint_*.pt the adaptation run writes: choose another --output_dir."
        )
    return {key: load_pretrained_weights(net, path, key=key) for key, net in networks.items()}
