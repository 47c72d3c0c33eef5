"""Whether a backbone's pretrained weights can be had before any work starts: cached, or a hub in reach.

timm and segmentation_models_pytorch fetch ImageNet weights from the Hugging Face hub (or, for some timm
models, a URL into torch's hub cache). Without a network, huggingface_hub retries for about a minute and
then raises LocalEntryNotFoundError. This module looks for the files in the local caches the libraries
read, and if they are not there tries one TCP connection to the hub with a short timeout, so a recipe
that cannot get its weights stops in seconds with one sentence naming model.pretrained.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from medals.errors import MedalsError

CONNECT_TIMEOUT_S = 2.0
_TRUE = {"1", "on", "yes", "true"}


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache as huggingface_hub resolves it (HF_HUB_CACHE, HF_HOME/hub, default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def hub_offline() -> bool:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def _hf_cached(repo: str, files: list[list[str]]) -> bool:
    """Every group of `files` has one alternative in the hub cache (e.g. [[config.json], [a, b]])."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = repo.partition("@")
    cache = hf_cache_dir()

    def cached(name: str) -> bool:
        found = try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=revision or None)
        return isinstance(found, str) and os.path.isfile(found)

    return all(any(cached(name) for name in group) for group in files)


def weights_source(backbone: str, smp_native: bool) -> tuple[str, bool, str, str] | None:
    """(where the weights come from, whether they are cached, the server's URL, the cache) of a backbone;
    None when the library names no source the check knows (the library then reports it itself)."""
    if smp_native:
        import segmentation_models_pytorch as smp

        settings = smp.encoders.encoders[backbone]["pretrained_settings"].get("imagenet")
        if not settings:
            return None
        repo = (
            f"{settings['repo_id']}@{settings['revision']}"
            if settings.get("revision")
            else settings["repo_id"]
        )
        cached = _hf_cached(repo, [["config.json"], ["model.safetensors"]])
        return f"{settings['repo_id']} on the Hugging Face hub", cached, hf_endpoint(), str(hf_cache_dir())
    from timm.models import get_pretrained_cfg
    from timm.models._builder import _resolve_pretrained_source

    try:
        cfg = get_pretrained_cfg(backbone.removeprefix("tu-"))
    except RuntimeError:  # an unknown pretrained tag: timm says so when it builds the model
        return None
    if cfg is None:
        return None
    kind, where = _resolve_pretrained_source(cfg.to_dict())
    if kind == "hf-hub":
        repo, name = where if isinstance(where, tuple) else (where, None)
        names = [name, name.removesuffix(".bin") + ".safetensors"] if name else []
        names = names or ["model.safetensors", "pytorch_model.bin"]
        cached = _hf_cached(repo, [names])
        return f"{repo} on the Hugging Face hub", cached, hf_endpoint(), str(hf_cache_dir())
    if kind == "url":
        from timm.models._hub import get_cache_dir

        cached = (Path(get_cache_dir()) / os.path.basename(urlparse(where).path)).is_file()
        return where, cached, where, get_cache_dir()
    if kind == "file":
        return str(where), Path(where).is_file(), "", str(Path(where).parent)
    return None


def reachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """One TCP connection to the URL's host within `timeout` seconds (name lookup included)."""
    parsed = urlparse(url)
    if not parsed.hostname:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    # A thread, because a name lookup honours no timeout: a hung resolver must not hang the check.
    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(result and result[0])


def check_pretrained(backbone: str, key: str, smp_native: bool = False) -> None:
    """MedalsError naming `key` (model.pretrained) when the backbone's weights are neither cached nor
    downloadable now; returns at once when they are cached."""
    source = weights_source(backbone, smp_native)
    if source is None:
        return
    where, cached, server, cache = source
    if cached:
        return
    weights_key = key.rsplit(".", 1)[0] + ".weights"
    fix = f"connect to the network once, give a local file in {weights_key}, or set {key}=false"
    if hub_offline():
        raise MedalsError(
            f"{key}: the weights of backbone '{backbone}' ({where}) are not in the local cache "
            f"({cache}) and HF_HUB_OFFLINE is set: {fix}"
        )
    if server and not reachable(server):
        host = urlparse(server).hostname
        raise MedalsError(
            f"{key}: the weights of backbone '{backbone}' ({where}) are not in the local cache "
            f"({cache}) and {host} cannot be reached: {fix}"
        )
