"""Capture and restore every random number generator a training run draws from, for bit-exact resumption.

A snapshot holds plain Python values and tensors only, so a checkpoint holding it loads with
``torch.load(..., weights_only=True)`` (what MONAI's ``CheckpointLoader`` and ``load_gvae`` use).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["capture_rng_state", "restore_rng_state", "data_random_generators", "engine_generators"]

logger = logging.getLogger(__name__)

# The attribute walk below stops at these: they hold data or weights, never a transform's generator.
_LEAF_TYPES = (torch.Tensor, np.ndarray, nn.Module, str, bytes, int, float, bool, type(None))
_MAX_DEPTH = 10
_MAX_SEQUENCE = 256


def data_random_generators(root: Any) -> list[np.random.RandomState | np.random.Generator | torch.Generator]:
    """Random generators reachable from a data loader: its ``generator``, its sampler's, and those of the dataset's
    transforms (MONAI's ``Randomizable.R``), in a fixed order.

    The walk follows object attributes and short lists/tuples (``Compose.transforms``) the way MONAI's
    ``set_rnd`` does, skips tensors, arrays, networks and long sequences (a dataset's list of items), and visits
    each object once. The class-level ``Randomizable.R`` shared by transforms never given a seed comes last.

    Args:
        root: a ``DataLoader`` (or a dataset, or a transform).

    Returns:
        the generators, each once.

    Example::

        states = [g.get_state() for g in data_random_generators(loader) if isinstance(g, torch.Generator)]
    """
    found: list[Any] = []
    seen_ids: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if depth > _MAX_DEPTH or id(obj) in seen_ids:
            return
        seen_ids.add(id(obj))
        if isinstance(obj, (np.random.RandomState, np.random.Generator, torch.Generator)):
            found.append(obj)
            return
        if isinstance(obj, _LEAF_TYPES):
            return
        if isinstance(obj, (list, tuple)):
            if len(obj) <= _MAX_SEQUENCE:
                for item in obj:
                    visit(item, depth + 1)
            return
        if isinstance(obj, dict):
            if len(obj) <= _MAX_SEQUENCE:
                for item in obj.values():
                    visit(item, depth + 1)
            return
        attributes = getattr(obj, "__dict__", None)
        if not isinstance(attributes, dict):
            return
        for key, value in list(attributes.items()):
            if not key.startswith("__"):
                visit(value, depth + 1)

    visit(root, 0)
    try:
        from monai.transforms import Randomizable

        visit(Randomizable.R, 0)
    except ImportError:  # pragma: no cover - monai is a dependency
        pass
    return found


def _numpy_state(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_tuple(state: dict[str, Any]) -> tuple:
    keys = state["keys"].cpu().numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"])


def _generator_state(gen: Any) -> dict[str, Any]:
    if isinstance(gen, torch.Generator):
        return {"kind": "torch", "state": gen.get_state()}
    if isinstance(gen, np.random.RandomState):
        return {"kind": "numpy_legacy", "state": _numpy_state(gen.get_state())}
    return {"kind": "numpy", "state": gen.bit_generator.state}


def _set_generator_state(gen: Any, state: dict[str, Any]) -> bool:
    kind = state.get("kind")
    if isinstance(gen, torch.Generator) and kind == "torch":
        gen.set_state(state["state"].cpu())
    elif isinstance(gen, np.random.RandomState) and kind == "numpy_legacy":
        gen.set_state(_numpy_tuple(state["state"]))
    elif isinstance(gen, np.random.Generator) and kind == "numpy":
        gen.bit_generator.state = state["state"]
    else:
        return False
    return True


def engine_generators(engine: Any) -> dict[str, torch.Generator]:
    """The engine's own random generators by name, from its ``random_generators()`` method (``GVAETrainer``'s
    ``{"latent_generator": ...}``); empty for an engine without one.

    Example::

        engine_generators(trainer)  # {'latent_generator': <torch._C.Generator ...>} for a seeded GVAETrainer
    """
    generators = getattr(engine, "random_generators", None)
    if not callable(generators):
        return {}
    return {name: gen for name, gen in generators().items() if isinstance(gen, torch.Generator)}


def capture_rng_state(engine: Any = None, data_loader: Any = None) -> dict[str, Any]:
    """Snapshot of the Python, NumPy, torch (CPU and CUDA) generators, the engine's own generators
    (:func:`engine_generators`: the ``GVAETrainer``'s ``latent_generator``) and the data pipeline's generators (:func:`data_random_generators`).

    Args:
        engine: the trainer, or ``None``.
        data_loader: the training data loader; default ``engine.data_loader``.

    Returns:
        a dictionary of tensors and plain Python values (``weights_only``-loadable).

    Example::

        state = capture_rng_state(trainer)
        ...
        restore_rng_state(state, trainer)
    """
    if data_loader is None and engine is not None:
        data_loader = getattr(engine, "data_loader", None)
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return {
        "python": random.getstate(),
        "numpy": _numpy_state(np.random.get_state()),
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "engine": {name: gen.get_state() for name, gen in engine_generators(engine).items()},
        "data": [_generator_state(g) for g in data_random_generators(data_loader)] if data_loader is not None else [],
    }


def restore_rng_state(state: dict[str, Any], engine: Any = None, data_loader: Any = None) -> list[str]:
    """Put back a snapshot taken by :func:`capture_rng_state` (the same engine/data loader layout).

    Args:
        state: the snapshot.
        engine: the trainer, or ``None``.
        data_loader: the training data loader; default ``engine.data_loader``.

    Returns:
        warnings: parts that could not be restored (a changed data pipeline, no CUDA); empty when exact.
    """
    problems: list[str] = []
    random.setstate(state["python"])
    np.random.set_state(_numpy_tuple(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None:
        if torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
        else:
            problems.append("CUDA generator states not restored (different CUDA devices)")
    engine_states = state.get("engine", {})
    for name, gen in engine_generators(engine).items():
        if name in engine_states:
            gen.set_state(engine_states[name].cpu())  # a map_location may have moved the state to the GPU
        else:
            problems.append(f"the checkpoint has no state for the engine's {name}")
    if data_loader is None and engine is not None:
        data_loader = getattr(engine, "data_loader", None)
    if data_loader is not None:
        gens = data_random_generators(data_loader)
        saved = state.get("data", [])
        if len(gens) != len(saved):
            problems.append(f"the data pipeline has {len(gens)} random generators, the checkpoint {len(saved)}")
        else:
            for i, (gen, gen_state) in enumerate(zip(gens, saved)):
                if not _set_generator_state(gen, gen_state):
                    problems.append(f"data generator {i} is a {type(gen).__name__}, the checkpoint has {gen_state.get('kind')}")
    return problems
