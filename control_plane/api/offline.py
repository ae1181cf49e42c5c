"""Air-gapped sites: signed bundles out, provisioned agent identities, report exports in."""

from __future__ import annotations

from typing import Annotated

from flask import Blueprint, Response, g, request
from pydantic import Field, StringConstraints

from common.bundles import ReportAckFile, ReportExport
from common.clock import utcnow
from common.names import check_name
from common.schemas import EnrollRequest, EnrollResponse, Heartbeat, Role, Strict
from common.signing import BadSignature, PublicKey, verify
from control_plane.api.routing import operation, parse_body
from control_plane.auth import ADMIN, READERS
from control_plane.bundles import stream_bundle
from control_plane.context import get_store, settings, state
from control_plane.errors import Conflict, Forbidden, NotFound, Unprocessable
from control_plane.manifests import build_manifest
from control_plane.store.db import write_transaction
from control_plane.store.tokens import Principal

bp = Blueprint("offline", __name__, url_prefix="/api/v1")
TAG = "air-gapped"


class ProvisionRequest(Strict):
    """An agent identity made on the control plane, for a host that cannot reach it."""

    hostname: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    public_key: PublicKey = Field(description="The agent's own key, made by the provisioner.")


@operation(
    bp,
    "/environments/<env>/bundle",
    roles=READERS,
    tag=TAG,
    errors=(404,),
    binary_response="application/x-tar",
    response_headers={"Content-Length": "The exact size of the tar, for progress bars."},
)
def export_bundle(env: str):
    """Download a signed bundle: the manifest, then every artifact and profile it names.

    A tar streamed as it is read, with an exact Content-Length; carry it to an air-gapped site
    and apply it there with `tether agent import-bundle`.
    """
    check_name(env, "environment name")
    store = get_store()
    found = store.environments.get(env)
    if found is None:
        raise NotFound(f"environment {env!r} not found")
    signed = build_manifest(store, env, state().keys.current(), found.manifest_ttl)
    assert signed is not None
    length, chunks = stream_bundle(signed, state().artifacts.open)
    response = Response(chunks, mimetype="application/x-tar", direct_passthrough=True)
    response.headers["Content-Length"] = str(length)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{env}-r{signed.manifest.revision}.tether-bundle.tar"'
    )
    return response


@operation(
    bp,
    "/environments/<env>/agents",
    "POST",
    roles=ADMIN,
    tag=TAG,
    body=ProvisionRequest,
    response=EnrollResponse,
    status=201,
    errors=(404,),
)
def provision(env: str):
    """Create an agent identity for an offline host, registering the agent's own public key."""
    check_name(env, "environment name")
    body = parse_body(ProvisionRequest)
    store = get_store()
    if store.environments.revision(env) is None:
        raise NotFound(f"environment {env!r} not found")
    # Provisioning is enrollment done by an admin on the host's behalf: one token use, no limit.
    with write_transaction(store.db):
        enrollment = store.tokens.insert(
            Role.enrollment,
            environment=env,
            max_uses=1,
            description=f"provisioning {body.hostname} by {g.principal.actor}",
        )
        agent, token = store.agents.enroll(
            Principal(enrollment.id, enrollment.role, env),
            EnrollRequest(hostname=body.hostname, labels=body.labels, public_key=body.public_key),
        )
    answer = EnrollResponse(
        agent_id=agent.id,
        token=token,
        environment=env,
        signing_keys=state().keys.current().public,
    )
    return answer.model_dump(mode="json"), 201


@operation(
    bp,
    "/reports/import",
    "POST",
    roles=ADMIN,
    tag=TAG,
    body=ReportExport,
    response=ReportAckFile,
    errors=(403, 404, 409, 413),
)
def import_reports():
    """Import an offline agent's report export; answer with a signed acknowledgement file.

    The export must be signed by the agent's own key. Each report is stored once, however often
    the file is imported; a tampered file is refused whole.
    """
    request.max_content_length = settings().max_report_batch_bytes
    export = parse_body(ReportExport)
    store = get_store()
    agent = store.agents.get(export.agent_id)
    if agent is None:
        raise NotFound(f"agent {export.agent_id!r} not found")
    if agent.environment != export.environment:
        raise Forbidden(
            f"agent {agent.id} belongs to {agent.environment!r}, not {export.environment!r}"
        )
    if agent.public_key is None:  # the export may be fine: the agent's record is what lacks
        raise Conflict(f"agent {agent.id} registered no public key: it cannot export reports")
    if export.signature is None:
        raise Unprocessable(
            "the export is not signed", details=[{"field": "signature", "message": "missing"}]
        )
    try:
        verify(
            export.signed_part(), [export.signature], {agent.public_key.key_id: agent.public_key}
        )
    except BadSignature as error:
        raise Forbidden(f"the export's signature does not verify: {error}") from None
    stored: list[str] = []
    duplicates: list[str] = []
    if export.reports:
        stored, duplicates = store.reports.add_batch(agent.id, agent.environment, export.reports)
    newest: Heartbeat | None = export.heartbeats[-1] if export.heartbeats else None
    store.agents.record_import(agent.id, newest)
    ack = ReportAckFile(
        agent_id=agent.id,
        acknowledged=stored + duplicates,
        stored=len(stored),
        duplicates=len(duplicates),
        issued_at=utcnow(),
    )
    ack.signatures = state().keys.current().sign(ack.signed_part())
    return ack.model_dump(mode="json")
