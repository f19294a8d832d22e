"""What this replica serves: champion, challenger and rollout state, followed from the registry.

One `get_registered_model` call per poll returns both the aliases and the rollout tags. A new
version is downloaded and loaded beside the old one, then the whole `Snapshot` reference is
replaced: a request reads the snapshot once and scores with a consistent pair of models and
rollout state, and no request ever waits for a load (no downtime on alias moves).
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from modstack.names import ALIAS_CHALLENGER, ALIAS_CHAMPION, REGISTERED_MODEL
from modstack.policy import DEFAULT_POLICY
from modstack.registry.aliases import TAG_PREVIOUS_CHAMPION
from modstack.registry.rollout import STATE_TAG, RolloutState
from services.serving.metrics import MODEL_SWAPS, REGISTRY_POLL_FAILURES, set_model_info
from services.serving.model_store import LoadedModel, ModelCache, ModelContractError

log = logging.getLogger(__name__)


def freeze_long_lived() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach (`gc.freeze`).

    Two loaded versions and the Feast registry are ~290k tracked objects; a full collection
    over them took 157 ms here, a pause of the whole worker (every request in it waits)
    whenever scoring's allocations set one off. Frozen objects are still freed by reference
    counting when a version is dropped.
    """
    gc.freeze()


@dataclass(frozen=True)
class Snapshot:
    """An immutable view of what is served; replaced as a whole, never mutated."""

    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None
    rollout: RolloutState | None = None
    source: str = "none"  # "registry" or "cache" (registry unreachable at start-up)

    def model_for(self, variant: str) -> LoadedModel | None:
        """The model serving `variant`."""
        return self.champion if variant == ALIAS_CHAMPION else self.challenger


def _parse_rollout(tags: dict[str, str]) -> RolloutState | None:
    """The rollout state tag; an unreadable one means "no rollout" (champion answers all)."""
    if STATE_TAG not in tags:
        return None
    try:
        return RolloutState.model_validate(json.loads(tags[STATE_TAG]))
    except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError
        log.error("unreadable rollout state tag %s, routing to champion only: %s", STATE_TAG, exc)
        return None


class RegistryUnavailable(RuntimeError):
    """The MLflow registry could not be read."""


@dataclass
class _PollState:
    broken_versions: set[str] = field(default_factory=set)
    last_error: str = ""


class Deployment:
    """Follows one policy's `<policy>-classifier@champion`, `@challenger` and rollout state.

    Args:
        client: an `mlflow.MlflowClient` pointed at the registry.
        cache: the local model cache (downloads land there; start-up falls back to it).
        poll_interval_s: seconds between polls of the registry.
        model_name: the registered model followed.
        policy: the policy it serves (the `policy` label of the metrics).
    """

    def __init__(
        self,
        client: Any,
        cache: ModelCache,
        poll_interval_s: float,
        model_name: str = REGISTERED_MODEL,
        policy: str = DEFAULT_POLICY,
    ) -> None:
        self.client = client
        self.policy = policy
        self.cache = cache
        self.model_name = model_name
        self.poll_interval_s = poll_interval_s
        self.snapshot = Snapshot()
        self._poll = _PollState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()

    # -- reading the registry ---------------------------------------------------------------

    def _read_registry(self) -> tuple[dict[str, str], dict[str, str], RolloutState | None]:
        from mlflow.exceptions import MlflowException

        try:
            registered = self.client.get_registered_model(self.model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}, {}, None
            raise RegistryUnavailable(str(exc)) from exc
        except Exception as exc:  # connection refused, timeouts: requests/urllib3 errors
            raise RegistryUnavailable(f"{type(exc).__name__}: {exc}") from exc
        aliases = {str(k): str(v) for k, v in (registered.aliases or {}).items()}
        tags = dict(registered.tags or {})
        return aliases, tags, _parse_rollout(tags)

    def _load(self, version: str | None, current: LoadedModel | None) -> LoadedModel | None:
        if version is None:
            return None
        if current is not None and current.version == version:
            return current
        if version in self._poll.broken_versions:
            return current
        try:
            return self.cache.load(version)
        except ModelContractError as exc:
            # A version that breaks the model contract stays broken: do not download it again
            # every poll. The old model keeps serving.
            self._poll.broken_versions.add(version)
            log.error("refusing %s version %s: %s", self.model_name, version, exc)
            return current
        except Exception as exc:  # download interrupted, registry gone mid-way: retry next poll
            log.warning("cannot load %s version %s yet: %s", self.model_name, version, exc)
            return current

    def refresh(self) -> Snapshot:
        """Read aliases and rollout state, load what changed, swap the snapshot.

        Raises:
            RegistryUnavailable: the registry could not be read (the snapshot is unchanged).
        """
        with self._refresh_lock:
            aliases, tags, rollout = self._read_registry()
            old = self.snapshot
            # A champion alias that disappears (registry reset, manual mistake) must not leave
            # the service without a model: keep serving the last one. The challenger alias is
            # removed on purpose at rollback and promotion, so its absence unloads it.
            champion = self._load(aliases.get(ALIAS_CHAMPION), old.champion) or old.champion
            challenger = self._load(aliases.get(ALIAS_CHALLENGER), old.challenger)
            new = Snapshot(champion, challenger, rollout, source="registry")
            self._swap(old, new)
            served = {
                alias: model.version
                for alias, model in ((ALIAS_CHAMPION, champion), (ALIAS_CHALLENGER, challenger))
                if model is not None
            }
            if served != self.cache.remembered_aliases():
                self.cache.remember_aliases(served)
                # keep what is served and the version a manual rollback would go back to
                self.cache.prune({*served.values(), tags.get(TAG_PREVIOUS_CHAMPION, "")})
            return new

    def start_from_cache(self) -> Snapshot:
        """Serve the last known good versions from disk (registry down at start-up).

        The rollout state is unknown without the registry, so the challenger (if cached) only
        answers forced requests until the registry is back.
        """
        remembered = self.cache.remembered_aliases()
        loaded: dict[str, LoadedModel | None] = {}
        for alias in (ALIAS_CHAMPION, ALIAS_CHALLENGER):
            version = remembered.get(alias)
            loaded[alias] = self.cache.load_cached(version) if version else None
        new = Snapshot(loaded[ALIAS_CHAMPION], loaded[ALIAS_CHALLENGER], None, source="cache")
        self._swap(self.snapshot, new)
        return new

    def _swap(self, old: Snapshot, new: Snapshot) -> None:
        self.snapshot = new  # one reference assignment: atomic for readers
        if new.champion is not old.champion or new.challenger is not old.challenger:
            freeze_long_lived()  # the new version's objects, out of the collector's scans
        for variant in (ALIAS_CHAMPION, ALIAS_CHALLENGER):
            before, after = old.model_for(variant), new.model_for(variant)
            before_v = before.version if before else None
            after_v = after.version if after else None
            if before_v != after_v:
                set_model_info(self.policy, variant, before_v, after_v)
                if after is not None:
                    MODEL_SWAPS.labels(self.policy, variant).inc()
                log.info(
                    "%s %s: version %s -> %s (%s)",
                    self.policy,
                    variant,
                    before_v,
                    after_v,
                    new.source,
                )

    # -- start-up and the poller ------------------------------------------------------------

    def start(self) -> Snapshot:
        """Load from the registry, or from the disk cache when it is unreachable; then poll."""
        try:
            snapshot = self.refresh()
        except RegistryUnavailable as exc:
            log.warning("registry unreachable at start-up (%s); serving from the model cache", exc)
            self._poll.last_error = str(exc)
            snapshot = self.start_from_cache()
        self._thread = threading.Thread(target=self._run, name="registry-poller", daemon=True)
        self._thread.start()
        return snapshot

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.refresh()
                self._poll.last_error = ""
            except Exception as exc:
                REGISTRY_POLL_FAILURES.inc()
                if self._poll.last_error != str(exc):
                    log.warning("registry poll failed, keeping current models: %s", exc)
                self._poll.last_error = str(exc)

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def last_poll_error(self) -> str:
        """The last registry error ('' when the last poll worked)."""
        return self._poll.last_error
