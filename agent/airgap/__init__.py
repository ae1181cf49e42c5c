"""Sites with no network: provisioned identities, signed bundles, report exports.

What belongs here: reading and applying bundle files (with the same checks as a poll), the
inbox that hands a bundle to a running agent, and report exports and their acknowledgements.
What never does: poll or serve; an import applies through a reconciler it is given.
"""
