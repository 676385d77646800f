"""Secrets: Secrets Manager entries with their own KMS key, read by workloads at run time.

A workload never gets a secret value in its environment: it gets ``PARLEY_<SETTING>_SECRET_ARN``
and reads the value at start (the secret string is the setting's value). Values come from Pulumi
secrets when configured; otherwise the entry is created empty and filled with
``aws secretsmanager put-secret-value`` (docs/deploy.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class SecretSpec:
    key: str  # short name: parley/<stack>/<key> in Secrets Manager
    setting: str  # the Parley setting it feeds, e.g. PARLEY_TWILIO_AUTH_TOKEN
    value: pulumi.Output[str] | None
    description: str


def secret_arn_variable(setting: str) -> str:
    """The environment variable that carries a secret's ARN instead of its value."""
    return f"{setting}_SECRET_ARN"


class Secrets(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        specs: list[SecretSpec],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("parley:infra:Secrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack = pulumi.get_stack()
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"Parley {stack} secrets",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=child,
        )
        self.arns: dict[str, pulumi.Output[str]] = {}
        for spec in specs:
            secret = aws.secretsmanager.Secret(
                f"{name}-{spec.key}",
                name=f"parley/{stack}/{spec.key}",
                description=spec.description,
                kms_key_id=self.key.arn,
                recovery_window_in_days=7,
                opts=child,
            )
            if spec.value is not None:
                aws.secretsmanager.SecretVersion(
                    f"{name}-{spec.key}",
                    secret_id=secret.id,
                    secret_string=spec.value,  # a Pulumi secret: config secret or derived from one
                    opts=pulumi.ResourceOptions(parent=secret),
                )
            self.arns[spec.setting] = secret.arn
        self.register_outputs({"arns": self.arns})

    def environment(self, *settings: str) -> dict[str, pulumi.Output[str]]:
        """``PARLEY_X_SECRET_ARN`` variables for the given settings (a KeyError names a typo)."""
        return {secret_arn_variable(setting): self.arns[setting] for setting in settings}

    def arns_for(self, *settings: str) -> list[pulumi.Output[str]]:
        return [self.arns[setting] for setting in settings]
