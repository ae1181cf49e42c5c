"""The root of every error the agent raises on purpose, so a caller catches one family.

Each error lives beside the code that raises it; this is the tree (as httpx draws its own):

AgentError
 ├── NotEnrolled, StartupError               daemon: the agent cannot start
 ├── StateError                              local/state: identity and state files
 ├── TrustError                              local/trust: keys this agent trusts
 │    └── PinMismatch
 ├── CacheError                              local/cache: downloads into the artifact cache
 │    ├── InsufficientDisk
 │    ├── DownloadIncomplete
 │    ├── DownloadCancelled
 │    └── VerificationFailed                 (also common.digests.DigestMismatch)
 ├── ClientError                             sync/client (also common.errors.TetherError)
 │    ├── Unreachable
 │    └── Rejected
 ├── ManifestRefused                         sync/reconciler: signature, environment, revision
 ├── RuntimeFailure                          serving/runtime: loading and predicting
 │    ├── UnsupportedFormat
 │    ├── LoadFailed
 │    │    └── UntrustedTypes
 │    ├── SmokeTestFailed
 │    ├── InvalidInput
 │    │    └── BatchTooLarge
 │    ├── ModelNotFound
 │    └── PredictFailed
 ├── MalformedJson                           serving/json_body (also ValueError)
 │    └── TooDeep
 ├── HttpError                               serving/app: a request answered with an error
 ├── ShadowCrashed, ShadowFailed             reports/shadow_child
 ├── OfflineError                            airgap/exports: provisioning, exports, acks
 ├── BundleRefused                           airgap/bundle_tar: a bundle file refused
 ├── InboxError                              airgap/inbox: the hand-off to a running agent
 └── AgentRunning                            airgap/bundle: hand the bundle to the agent instead
"""

from __future__ import annotations


class AgentError(Exception):
    """An error the agent raises on purpose, with a message meant for its operator."""
