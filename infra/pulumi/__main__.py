"""Entry point `pulumi up` runs (from infra/pulumi). The program itself lives in parley_infra/."""

from parley_infra.program import build

build()
