"""A workload's environment, derived from what its code declares it reads (``NEEDS``).

The stack offers values (plain settings it knows, Secrets Manager ARNs for secrets); a workload
gets exactly the variables its :class:`shared.settings.Needs` names, and may read exactly the
secrets among them. A need the stack cannot meet fails the program, not the first request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pulumi

from shared.settings import Needs

from .secrets import Secrets


def workload_environment(
    workload: str,
    needs: Needs,
    values: Mapping[str, pulumi.Input[str]],
    secrets: Secrets,
    *,
    set_elsewhere: Iterable[str] = (),
) -> dict[str, pulumi.Input[str]]:
    """``PARLEY_*`` variables for ``needs``: plain values, then ``PARLEY_X_SECRET_ARN``.

    ``set_elsewhere``: needed settings the caller fills another way (a pod's own name).
    """
    plain = needs.settings - set(set_elsewhere)
    missing = sorted(plain - values.keys()) + sorted(needs.secrets - secrets.arns.keys())
    if missing:
        raise ValueError(f"{workload} needs {missing}, which this stack does not provide")
    return {
        **{name: values[name] for name in sorted(plain)},
        **secrets.environment(*sorted(needs.secrets)),
    }


def secret_arns(needs: Needs, secrets: Secrets) -> list[pulumi.Output[str]]:
    """The secrets a workload may read: those it needs, no others."""
    return secrets.arns_for(*sorted(needs.secrets))
