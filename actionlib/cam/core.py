"""Class activation maps of TSN-style video models, on top of ``pytorch-grad-cam``.

A TSN / TSM / ACTION model (``VideoNet``) runs its 2-D backbone on the ``(N*T, 3, H, W)`` frames
of a clip batch; every layer inside the backbone therefore has per-frame activations
``(N*T, C, h, w)``, and the clip logit is the average of the per-frame logits (consensus).

``VideoCAM`` hands the frames view to a ``pytorch_grad_cam`` CAM object with the model itself
(``VideoNet`` accepts ``(N*T, 3, H, W)`` and returns the clip logits ``(N, K)``), so that

- the CAM target is a *clip-level* class score (the consensus logit), one target per clip;
- the gradients of that score reach every frame's activations; the package then builds one map
  per frame (``N*T`` maps), upsamples it to the input size and min-max normalises it to [0, 1]
  (the package's convention: each frame's map separately);
- the maps come back as ``(N, T, H, W)``.

Nothing of the CAM arithmetic is re-implemented here: weights, upsampling and normalisation are
the package's. This module adds the video bookkeeping, argument checks, batching, and keeps the
model as it was (training mode, ``requires_grad`` flags, no hooks left behind).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

# name -> class name in pytorch_grad_cam. Methods that re-run the model on masked inputs
# (ScoreCAM, AblationCAM) or need a per-image forward (FullGrad) are left out: they do not fit
# the frames-of-clips batch.
_METHOD_CLASSES = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "hirescam": "HiResCAM",
    "eigengradcam": "EigenGradCAM",
    "gradcamelementwise": "GradCAMElementWise",
}
METHODS = tuple(_METHOD_CLASSES)
_ALIASES = {"gradcampp": "gradcam++", "gradcamplusplus": "gradcam++"}

# how each method is labelled in figures and tables
METHOD_LABELS = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM",
    "eigencam": "Eigen-CAM",
    "hirescam": "HiResCAM",
    "eigengradcam": "EigenGrad-CAM",
    "gradcamelementwise": "Grad-CAM (element-wise)",
}

TargetLike = int | Callable[[torch.Tensor], torch.Tensor]


def canonical_method(method: str) -> str:
    """``"Grad-CAM++"``, ``"gradcam_pp"``, ``"GradCAMPlusPlus"`` -> ``"gradcam++"``; ValueError
    naming the allowed methods otherwise."""
    if not isinstance(method, str):
        raise ValueError(f"CAM method must be a string, got {method!r}; allowed: {list(METHODS)}")
    key = method.lower().replace("-", "").replace("_", "").replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in _METHOD_CLASSES:
        raise ValueError(f"unknown CAM method {method!r}; allowed: {list(METHODS)}")
    return key


def method_class(method: str) -> type:
    """The ``pytorch_grad_cam`` class of a method name."""
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, _METHOD_CLASSES[canonical_method(method)])


def default_target_layer(model: nn.Module) -> nn.Module:
    """The last stage of the backbone: ``model.backbone`` itself, whose output is the feature map
    ``(N*T, F, h, w)`` that the head pools (ResNet: ``layer4``'s output; MobileNetV2: ``features``;
    BN-Inception: its last block)."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ValueError(
            f"{type(model).__name__} has no 'backbone' module to take the default CAM target "
            "layer from; pass target_layer= (a module of the model or its dotted name)"
        )
    return backbone


def resolve_target_layers(model: nn.Module, target_layer: object = None) -> list[tuple[str, nn.Module]]:
    """``None`` (default layer), a dotted name (``"backbone.layer3"``), a module of ``model``,
    or a list of those -> ``[(name, module), ...]``."""
    names = {id(m): n for n, m in model.named_modules()}
    if target_layer is None:
        layer = default_target_layer(model)
        return [(names.get(id(layer), "backbone"), layer)]
    items = list(target_layer) if isinstance(target_layer, (list, tuple)) else [target_layer]
    if not items:
        raise ValueError("target_layer is an empty list; pass None for the default layer")
    out = []
    for item in items:
        if isinstance(item, str):
            try:
                layer = model.get_submodule(item) if item else None
            except AttributeError:
                layer = None
            if layer is None or layer is model:
                top = [n for n, _ in model.named_children()]
                sub = [f"backbone.{n}" for n, _ in getattr(model, "backbone", nn.Module()).named_children()]
                raise ValueError(
                    f"unknown target layer {item!r} in {type(model).__name__}; give a dotted module "
                    f"name such as {(sub[-2:] + top)[:6]} (see model.named_modules())"
                )
            out.append((item, layer))
        elif isinstance(item, nn.Module):
            if id(item) not in names or item is model:
                raise ValueError(
                    f"target layer {type(item).__name__} is not a submodule of the model; "
                    "pass one of model.modules() or its dotted name"
                )
            out.append((names[id(item)], item))
        else:
            raise ValueError(
                f"target_layer must be None, a module name, an nn.Module or a list of those, "
                f"got {type(item).__name__}"
            )
    return out


@dataclass
class VideoCAMResult:
    """CAMs of a clip batch.

    Attributes:
        maps: ``(N, T, H, W)`` float32 in [0, 1], one map per frame at the input size.
        targets: ``(N,)`` class index each clip's maps explain (-1 for a custom target callable).
        logits: ``(N, K)`` clip logits (consensus) of the model on the clips.
        method: the canonical CAM method name.
        layers: names of the target layers.
    """

    maps: np.ndarray
    targets: np.ndarray
    logits: np.ndarray
    method: str
    layers: tuple[str, ...]

    @property
    def probs(self) -> np.ndarray:
        """``(N, K)`` softmax of the clip logits."""
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def predictions(self) -> np.ndarray:
        """``(N,)`` predicted class of each clip."""
        return self.logits.argmax(axis=1)

    @property
    def scores(self) -> np.ndarray:
        """``(N,)`` softmax probability of each clip's predicted class."""
        return self.probs.max(axis=1)


class VideoCAM:
    """A CAM method of ``pytorch_grad_cam`` applied to a TSN-style video model.

    Args:
        model: a ``VideoNet`` (or a module with ``num_segments``, ``num_classes`` and a forward
            that takes frames ``(N*T, 3, H, W)`` and returns clip logits ``(N, K)``).
        method: one of ``METHODS`` (case, ``-`` and ``_`` ignored: ``"Grad-CAM++"`` works).
        target_layer: ``None`` (``model.backbone``: the last stage), a dotted module name, a module
            of ``model``, or a list of those (maps averaged over layers, as the package does).
        batch_size: clips per forward/backward pass.
        eigen_smooth: the package's ``eigen_smooth`` (first principal component of the weighted
            activations).

    ``cam(clips, targets=None)`` returns a ``VideoCAMResult``. The model is put in eval mode
    during the call and given back in the mode it was in; its parameters get no gradients.
    """

    def __init__(
        self,
        model: nn.Module,
        method: str = "gradcam",
        target_layer: object = None,
        *,
        batch_size: int = 8,
        eigen_smooth: bool = False,
    ) -> None:
        self.method = canonical_method(method)
        self.cam_class = method_class(self.method)
        for attr in ("num_segments", "num_classes"):
            if not isinstance(getattr(model, attr, None), int):
                raise ValueError(
                    f"{type(model).__name__} has no integer attribute {attr!r}; VideoCAM needs a "
                    "TSN-style video model such as actionlib.build_model(...)"
                )
        self.model = model
        self.layers = resolve_target_layers(model, target_layer)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self.eigen_smooth = bool(eigen_smooth)

    # --- argument checks ----------------------------------------------------------------------

    def _check_clips(self, clips: torch.Tensor) -> torch.Tensor:
        t = self.model.num_segments
        if not isinstance(clips, torch.Tensor):
            raise ValueError(f"clips must be a torch.Tensor (N, T, 3, H, W), got {type(clips).__name__}")
        if clips.dim() != 5 or clips.shape[1] != t or clips.shape[2] != 3:
            hint = " (one clip: pass clip[None])" if clips.dim() == 4 else ""
            raise ValueError(
                f"expected clips of shape (N, T={t}, 3, H, W), got {tuple(clips.shape)}{hint}"
            )
        if not clips.is_floating_point():
            raise ValueError(f"clips must be a floating-point tensor, got dtype {clips.dtype}")
        return clips

    def _check_targets(self, targets: object, n: int) -> list[TargetLike | None]:
        k = self.model.num_classes
        if targets is None:
            return [None] * n
        if isinstance(targets, (int, np.integer)) or callable(targets) and not isinstance(targets, type):
            items = [targets] * n
        else:
            items = list(targets)  # type: ignore[arg-type]
            if len(items) != n:
                raise ValueError(f"got {len(items)} targets for {n} clips; give one per clip, a single int, or None")
        out: list[TargetLike | None] = []
        for i, item in enumerate(items):
            if item is None:
                out.append(None)
            elif isinstance(item, (bool, np.bool_)):
                raise ValueError(f"target {i}: expected a class index, got {item!r}")
            elif isinstance(item, (int, np.integer)):
                if not 0 <= int(item) < k:
                    raise ValueError(f"target class index {int(item)} out of range; the model has {k} classes (0..{k - 1})")
                out.append(int(item))
            elif callable(item):
                out.append(item)
            else:
                raise ValueError(
                    f"target {i}: expected a class index, a pytorch_grad_cam target callable or None, "
                    f"got {type(item).__name__}"
                )
        return out

    def _shape_hook(self, name: str, frames: int) -> Callable:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if not isinstance(output, torch.Tensor) or output.dim() != 4 or output.shape[0] != frames:
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise ValueError(
                    f"target layer {name!r} gives {shape}; a CAM target layer must give per-frame "
                    f"feature maps (N*T={frames}, C, h, w), e.g. 'backbone' or a stage inside it"
                )
            if output.shape[-2:] == (1, 1):
                log.warning(
                    "target layer %r gives 1x1 feature maps at this input size: every CAM is constant "
                    "(blank after normalisation); use an earlier layer or a larger input", name
                )

        return hook

    # --- computation --------------------------------------------------------------------------

    def __call__(self, clips: torch.Tensor, targets: object = None) -> VideoCAMResult:
        """CAMs of ``clips`` ``(N, T, 3, H, W)`` (already normalised as the model expects).

        Args:
            targets: ``None`` (each clip's predicted class), a class index for all clips, or one
                entry per clip: a class index, ``None``, or a ``pytorch_grad_cam`` target callable
                applied to the clip's logits ``(K,)`` (e.g. ``ClassifierOutputSoftmaxTarget``).
        """
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        clips = self._check_clips(clips)
        n, t = clips.shape[0], clips.shape[1]
        wanted = self._check_targets(targets, n)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        grad_flags = [(p, p.requires_grad) for p in self.model.parameters()]
        maps, logits, explained = [], [], []
        try:
            # gradients only w.r.t. the activations: the input carries requires_grad instead of
            # the parameters (half the backward work, and no .grad left on the model)
            for p, _ in grad_flags:
                p.requires_grad_(False)
            for start in range(0, n, self.batch_size):
                stop = min(n, start + self.batch_size)
                batch = clips[start:stop].to(device).flatten(0, 1).detach().requires_grad_(True)
                handles = [
                    layer.register_forward_hook(self._shape_hook(name, batch.shape[0]))
                    for name, layer in self.layers
                ]
                cam = self.cam_class(model=self.model, target_layers=[m for _, m in self.layers])
                try:
                    with torch.enable_grad():
                        chunk = wanted[start:stop]
                        if all(w is None for w in chunk):
                            batch_targets = None  # the package explains each clip's top class
                        else:
                            if any(w is None for w in chunk):  # mixed: predictions fill the gaps
                                with torch.no_grad():
                                    top = self.model(batch).argmax(dim=1).tolist()
                                chunk = [top[j] if w is None else w for j, w in enumerate(chunk)]
                            batch_targets = [ClassifierOutputTarget(w) if isinstance(w, int) else w for w in chunk]
                        grayscale = cam(input_tensor=batch, targets=batch_targets, eigen_smooth=self.eigen_smooth)
                    out = cam.outputs.detach().cpu().numpy()
                    if batch_targets is None:
                        idx = out.argmax(axis=1).tolist()
                    else:
                        idx = [w if isinstance(w, int) else -1 for w in chunk]
                    logits.append(out)
                finally:
                    cam.activations_and_grads.release()
                    for h in handles:
                        h.remove()
                maps.append(grayscale.reshape(stop - start, t, *grayscale.shape[1:]))
                explained.extend(idx)
        finally:
            for p, flag in grad_flags:
                p.requires_grad_(flag)
            self.model.train(was_training)
        return VideoCAMResult(
            maps=np.clip(np.concatenate(maps).astype(np.float32), 0.0, 1.0),
            targets=np.asarray(explained, dtype=np.int64),
            logits=np.concatenate(logits).astype(np.float32),
            method=self.method,
            layers=tuple(name for name, _ in self.layers),
        )


def compute_cam(
    model: nn.Module,
    clips: torch.Tensor,
    method: str = "gradcam",
    targets: object = None,
    target_layer: object = None,
    *,
    batch_size: int = 8,
    eigen_smooth: bool = False,
) -> VideoCAMResult:
    """One-call form of ``VideoCAM(model, method, target_layer, ...)(clips, targets)``."""
    return VideoCAM(model, method, target_layer, batch_size=batch_size, eigen_smooth=eigen_smooth)(clips, targets)


def iter_methods(methods: Iterable[str] | str | None) -> list[str]:
    """Canonical names of ``methods`` (``None`` or ``"all"``: every method of ``METHODS``)."""
    if methods is None or methods == "all":
        return list(METHODS)
    if isinstance(methods, str):
        methods = [methods]
    out: list[str] = []
    for m in methods:
        c = canonical_method(m)
        if c not in out:
            out.append(c)
    return out


__all__ = [
    "METHODS",
    "METHOD_LABELS",
    "VideoCAM",
    "VideoCAMResult",
    "canonical_method",
    "compute_cam",
    "default_target_layer",
    "iter_methods",
    "method_class",
    "resolve_target_layers",
]
