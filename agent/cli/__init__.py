"""`tether agent`: the agent's command group; its commands live one module per theme.

host.py     enroll, run, status: an agent on a connected host
airgap.py   provision, import-bundle, export-reports, import-ack: sites with no network
options.py  the options the commands share

Commands parse, call the library (agent.enrollment, agent.airgap, agent.daemon) and print; no
decision is made here.
"""

from __future__ import annotations

import click

from agent.cli import airgap, host


@click.group()
def agent() -> None:
    """Run the agent on a serving host: enroll it, run it, check its status.

    Air-gapped hosts: provision, enroll --from-file, import-bundle, export-reports, import-ack
    (docs/air-gapped.md).

    \b
    Example:
      tether agent enroll --url https://tether.example.com --env production --token $TOKEN
      tether agent run
      tether agent status
    """


for _command in (host.enroll, host.run, host.status, *airgap.COMMANDS):
    agent.add_command(_command)
