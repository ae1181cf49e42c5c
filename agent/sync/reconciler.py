"""Make the served models match a manifest, one model at a time, never breaking what serves.

For each model not in place: fetch its artifacts into the cache (verified), load them beside
the serving version, smoke-test them on the manifest's input example, then swap the slot
atomically. Any failure leaves the old version serving and is recorded as (stage, error) for the
next heartbeat; the model is retried with exponential backoff. Models gone from the manifest are
unloaded. What serves is persisted in `state.json` (see agent.local.state) after every change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.errors import AgentError
from agent.local.cache import ArtifactCache, CacheError, Stream, VerificationFailed
from agent.local.state import AgentState, Applied, AppliedEntry, StateStore
from agent.local.trust import TrustError, TrustStore, expired
from agent.serving.runtime import LoadedModel, SmokeTestFailed, load_model, smoke_test
from agent.serving.slots import Deployed, ModelSlots
from agent.sync.plan import (
    applied_from,
    applied_model,
    attempt_key,
    in_place,
    input_examples,
    input_schema,
    kept_digests,
    same,
)
from common.clock import utcnow
from common.schemas import (
    ActualModel,
    Feature,
    Manifest,
    ManifestEntry,
    ManifestModel,
    ModelStatus,
    SignedManifest,
)
from common.signing import BadSignature

log = logging.getLogger("tether.agent.reconciler")

# Open the artifact of (model, version) from a byte offset: ControlPlaneClient.download.
ArtifactOpener = Callable[[str, int, int], AbstractContextManager[Stream]]


class ManifestRefused(AgentError):
    """A manifest failed verification; nothing in it was applied."""


class _Failed(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass
class Outcome:
    """What one reconcile pass did."""

    revision: int
    swapped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return not self.failed and not self.waiting

    @property
    def changed(self) -> bool:
        return bool(self.swapped or self.removed)


@dataclass
class _Retry:
    key: tuple[Any, ...]
    attempts: int
    not_before: float


class Reconciler:
    """Apply manifests to the slots, the cache and the persisted state."""

    def __init__(
        self,
        *,
        state: StateStore,
        cache: ArtifactCache,
        slots: ModelSlots,
        opener: ArtifactOpener,
        environment: str,
        keep_versions: int = 2,
        retry_initial: float = 5.0,
        retry_max: float = 300.0,
        cancel: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_swap: Callable[[str, Deployed], None] | None = None,
        trust: TrustStore | None = None,
        clock_skew: float = 300.0,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        # The keys manifests must be signed with (DATA_DIR/trust.json unless given).
        self.trust = trust or TrustStore(state.data_dir)
        self.clock_skew = clock_skew  # seconds a manifest is still taken after it expired
        self.now = now
        self.on_swap = on_swap  # e.g. point the drift window at the new version's profile
        self.state = state
        self.cache = cache
        self.slots = slots
        self.opener = opener
        self.environment = environment
        self.keep_versions = keep_versions
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.cancel = cancel
        self.clock = clock
        self._retries: dict[str, _Retry] = {}
        # Held by whoever applies a manifest (the poller, a bundle from the inbox): one at a
        # time, so two never stage into the cache or swap the same slot at once.
        self.lock = threading.RLock()

    # --- manifests ------------------------------------------------------------------------

    def verify_manifest(self, signed: SignedManifest) -> Manifest:
        """Return the manifest if this agent may apply it, else raise ManifestRefused.

        A pulled manifest and an imported bundle's pass the same checks, in order: signed by a
        key this agent trusts (agent.local.trust), for its environment, not older than a revision
        already accepted (a replay would roll the host back), and not expired, give or take
        `clock_skew` seconds (a frozen control plane or a replay would pin it to the past).
        """
        manifest = signed.manifest
        try:
            self.trust.verify(signed.signed_document(), signed.signatures)
        except (BadSignature, TrustError) as error:
            raise ManifestRefused(f"signature: {error}") from None
        if manifest.environment != self.environment:
            raise ManifestRefused(
                f"manifest is for environment {manifest.environment!r}, "
                f"this agent is enrolled in {self.environment!r}"
            )
        accepted = self.state.load().accepted_revision
        if manifest.revision < accepted:
            raise ManifestRefused(
                f"manifest revision {manifest.revision} is older than revision {accepted} "
                "already accepted (a replay or a restored control plane?)"
            )
        now = self.now()
        if expired(manifest, now, self.clock_skew):
            raise ManifestRefused(
                f"manifest revision {manifest.revision} expired at "
                f"{manifest.expires_at.isoformat()} (this host's clock says {now.isoformat()}, "
                f"{self.clock_skew:.0f} s of skew allowed): a frozen or replayed manifest?"
            )
        return manifest

    def accept(self, signed: SignedManifest, etag: str | None) -> Manifest:
        """Verify a fetched manifest and persist it as the one to converge on, before acting.

        A refused manifest is recorded against every model this agent knows, so the reason
        reaches the heartbeat; the agent then asks for a full manifest rather than a 304.
        Once one verifies, the keys it lists become the trusted set (key rotation).
        """
        try:
            manifest = self.verify_manifest(signed)
        except ManifestRefused as error:
            self.record_refusal(error)
            raise
        with self.state.edit() as state:
            state.accepted_revision = manifest.revision
            state.manifest = manifest
            state.manifest_etag = etag
            if state.applied is None:
                state.applied = Applied(environment=manifest.environment)
        self.trust.learn(manifest)
        return manifest

    def record_refusal(self, error: ManifestRefused) -> None:
        """Report a refused manifest against every model this agent knows, serving unchanged.

        The ETag is forgotten, so the next poll asks for a full manifest rather than a 304.
        """
        message = f"manifest refused: {error}"[:4000]
        with self.state.edit() as state:
            for name in sorted(set(self.slots.names()) | set(state.actual)):
                current = self.slots.get(name)
                known = state.actual.get(name)
                serving, shadow = (known.serving, known.shadow) if known else (None, None)
                if current is not None:
                    serving = current.primary.version
                    shadow = current.shadow.version if current.shadow else None
                state.actual[name] = ActualModel(
                    serving=serving,
                    shadow=shadow,
                    status=ModelStatus.failed,
                    error=message,
                    stage="manifest",
                    target=known.target if known else None,
                )
            state.manifest_etag = None

    # --- reconcile ------------------------------------------------------------------------

    def retry_now(self) -> None:
        """Forget every model's backoff: the next pass tries them all (an operator asked)."""
        self._retries.clear()

    def pending(self, manifest: Manifest) -> bool:
        """Tell whether a reconcile pass would try anything now."""
        now = self.clock()
        for name, want in manifest.models.items():
            if not in_place(self.slots.get(name), want):
                retry = self._retries.get(name)
                if retry is None or retry.key != attempt_key(want) or now >= retry.not_before:
                    return True
        return any(name not in manifest.models for name in self.slots.names())

    def reconcile(self, manifest: Manifest, opener: ArtifactOpener | None = None) -> Outcome:
        """Bring every model of the manifest in place, as far as possible right now.

        Artifacts missing from the cache are fetched through `opener` when given (a bundle's
        members), else through the reconciler's own (the control plane).
        """
        opener = opener or self.opener
        outcome = Outcome(revision=manifest.revision)
        for name in sorted(manifest.models):
            if self.cancel is not None and self.cancel.is_set():
                outcome.waiting.append(name)
                continue
            self._reconcile_model(name, manifest.models[name], outcome, opener)
        for name in self.slots.names():
            if name not in manifest.models:
                self.slots.remove(name)
                outcome.removed.append(name)
                log.info("model %s removed from the manifest: unloaded", name)
        with self.state.edit() as state:
            self._forget(state, outcome.removed, manifest)
            if outcome.converged:
                state.applied = applied_from(manifest)
        if outcome.changed:
            self._prune()
        return outcome

    def _reconcile_model(
        self, name: str, want: ManifestModel, outcome: Outcome, opener: ArtifactOpener
    ) -> None:
        current = self.slots.get(name)
        if in_place(current, want):
            self._retries.pop(name, None)
            self._record(name, current, ModelStatus.ok)
            return
        key = attempt_key(want)
        retry = self._retries.get(name)
        if retry is not None and retry.key == key and self.clock() < retry.not_before:
            outcome.waiting.append(name)
            return
        target = want.primary.version
        try:
            primary = self._prepare(name, want.primary, current, "primary", target, opener)
            shadow = None
            if want.shadow is not None:
                shadow = self._prepare(name, want.shadow, current, "shadow", target, opener)
        except _Failed as failure:
            if self.cancel is not None and self.cancel.is_set():
                outcome.waiting.append(name)  # stopping, not failing: resume on next start
                return
            self._fail(name, key, current, failure, outcome)
            return
        deployed = Deployed(primary=primary, shadow=shadow)
        self.slots.swap(name, deployed)
        self._notify_swap(name, deployed)
        self._retries.pop(name, None)
        outcome.swapped.append(name)
        log.info(
            "model %s now serves v%d%s",
            name,
            primary.version,
            f" with shadow v{shadow.version}" if shadow else "",
        )
        with self.state.edit() as state:
            applied = state.applied or Applied(environment=self.environment)
            applied.models[name] = applied_model(want)
            state.applied = applied
            state.actual[name] = ActualModel(
                serving=primary.version, shadow=shadow.version if shadow else None
            )
            recent = [want.primary.artifact.sha256]
            recent += [d for d in state.recent.get(name, []) if d != recent[0]]
            state.recent[name] = recent[: self.keep_versions]

    def _prepare(
        self,
        name: str,
        entry: ManifestEntry,
        current: Deployed | None,
        role: str,
        target: int,
        opener: ArtifactOpener,
    ) -> LoadedModel:
        """Return a loaded, smoke-tested model for `entry`, reusing one already serving."""
        for loaded in (current.primary, current.shadow) if current else ():
            if loaded is not None and same(loaded, entry):
                return loaded
        artifact = entry.artifact
        what = f"{role} v{entry.version}"
        if not self.cache.has(artifact.sha256, artifact.size):
            self._record(name, current, ModelStatus.downloading, target=target, durable=False)
        try:
            path = self.cache.get(
                artifact.sha256,
                artifact.size,
                lambda offset: opener(name, entry.version, offset),
                cancel=self.cancel,
            )
        except VerificationFailed as error:
            raise _Failed("verify", f"{what}: {error}") from error
        except Exception as error:  # the network, the disk, the server: retried later
            raise _Failed("download", f"{what}: {_describe(error)}") from error
        try:
            model = load_model(
                path,
                name=name,
                version=entry.version,
                sha256=artifact.sha256,
                format=artifact.format.value,
                input_schema=input_schema(entry),
            )
        except Exception as error:
            raise _Failed("load", f"{what}: {_describe(error)}") from error
        try:
            smoke_test(model, entry.input_example)
        except SmokeTestFailed as error:
            raise _Failed("smoke_test", f"{what}: {error}") from error
        except Exception as error:
            raise _Failed("smoke_test", f"{what}: {_describe(error)}") from error
        return model

    def _fail(
        self,
        name: str,
        key: tuple[Any, ...],
        current: Deployed | None,
        failure: _Failed,
        outcome: Outcome,
    ) -> None:
        retry = self._retries.get(name)
        attempts = retry.attempts + 1 if retry is not None and retry.key == key else 1
        delay = min(self.retry_max, self.retry_initial * 2.0 ** min(attempts - 1, 64))
        self._retries[name] = _Retry(key, attempts, self.clock() + delay)
        outcome.failed[name] = str(failure)
        serving = f"v{current.primary.version} keeps serving" if current else "nothing serves"
        log.error(
            "model %s: %s failed: %s (%s; retry in %.0f s)",
            name,
            failure.stage,
            failure,
            serving,
            delay,
        )
        self._record(
            name,
            current,
            ModelStatus.failed,
            error=str(failure),
            stage=failure.stage,
            target=key[0],
        )

    def _record(
        self,
        name: str,
        current: Deployed | None,
        status: ModelStatus,
        *,
        error: str | None = None,
        stage: str | None = None,
        target: int | None = None,
        durable: bool = True,
    ) -> None:
        actual = ActualModel(
            serving=current.primary.version if current else None,
            shadow=current.shadow.version if current and current.shadow else None,
            status=status,
            error=error[:4000] if error else None,
            stage=stage,
            target=target,
        )
        if self.state.load().actual.get(name) == actual:
            return
        with self.state.edit(durable=durable) as state:
            state.actual[name] = actual

    def _forget(self, state: AgentState, removed: list[str], manifest: Manifest) -> None:
        for name in list(state.actual):
            if name not in manifest.models:
                del state.actual[name]
        for name in list(state.recent):
            if name not in manifest.models:
                del state.recent[name]
        if state.applied is not None:
            for name in removed:
                state.applied.models.pop(name, None)
        for name in removed:
            self._retries.pop(name, None)

    def _prune(self) -> None:
        """Remove cached artifacts neither wanted, serving, nor among each model's last N."""
        keep = kept_digests(self.state.load(), self.keep_versions)
        self.cache.prune(keep)

    # --- start-up -------------------------------------------------------------------------

    def restore(self) -> list[str]:
        """Load the last applied models from the cache (verified again); return those loaded."""
        state = self.state.load()
        if state.applied is None:
            return []
        examples = input_examples(state.manifest)
        loaded = []
        for name, applied in sorted(state.applied.models.items()):
            try:
                primary = self._load_cached(name, applied.primary, examples)
                shadow = (
                    None
                    if applied.shadow is None
                    else self._load_cached(name, applied.shadow, examples)
                )
            except _Failed as failure:
                log.error("model %s: could not restore from the cache: %s", name, failure)
                self._record(
                    name,
                    None,
                    ModelStatus.failed,
                    error=str(failure),
                    stage=failure.stage,
                    target=applied.primary.version,
                )
                continue
            deployed = Deployed(primary=primary, shadow=shadow)
            self.slots.swap(name, deployed)
            self._notify_swap(name, deployed)
            self._record(name, deployed, ModelStatus.ok)
            loaded.append(name)
            log.info("model %s v%d restored from the cache", name, primary.version)
        return loaded

    def _notify_swap(self, name: str, deployed: Deployed) -> None:
        if self.on_swap is None:
            return
        try:
            self.on_swap(name, deployed)
        except Exception:  # a side concern (drift bookkeeping) must never undo a swap
            log.exception("after swapping %s", name)

    def _load_cached(
        self, name: str, entry: AppliedEntry, examples: dict[tuple[str, str], list[dict]]
    ) -> LoadedModel:
        try:
            path = self.cache.verify(entry.sha256, entry.size)
        except CacheError as error:
            raise _Failed("verify", f"v{entry.version}: {error}") from error
        try:
            schema = (
                None
                if entry.input_schema is None
                else [Feature.model_validate(item) for item in entry.input_schema]
            )
            model = load_model(
                path,
                name=name,
                version=entry.version,
                sha256=entry.sha256,
                format=entry.format,
                input_schema=schema,
            )
        except Exception as error:
            raise _Failed("load", f"v{entry.version}: {_describe(error)}") from error
        try:
            smoke_test(model, examples.get((name, entry.sha256)))
        except Exception as error:
            raise _Failed("smoke_test", f"v{entry.version}: {_describe(error)}") from error
        return model


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
