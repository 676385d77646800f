"""Network: a VPC with public and private subnets across AZs, NAT, and least-open security groups.

Only load balancers live in public subnets; everything else (EKS nodes, Lambdas, RDS, Redis, MSK)
is private. Data security groups accept their one port from the workload groups and nothing else.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from .config import NetworkConfig

MEDIA_PORT = 8765  # `parley media serve --port`; the NLB's 443 forwards here
POSTGRES_PORT = 5432
REDIS_PORT = 6379
KAFKA_IAM_PORT = 9098  # MSK brokers with IAM auth over TLS
HTTPS_PORT = 443
OTLP_HTTP_PORT = 4318  # the trace collector's OTLP/HTTP receiver (parley_infra/traces.py)


class Network(pulumi.ComponentResource):
    def __init__(
        self, name: str, cfg: NetworkConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("parley:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(cfg.vpc_cidr),
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        vpc_opts = pulumi.ResourceOptions(parent=self.vpc)
        # The default group allows all traffic between its members: empty it (CIS 5.4).
        aws.ec2.DefaultSecurityGroup(f"{name}-default", vpc_id=self.vpc.id, opts=vpc_opts)
        zones = aws.get_availability_zones_output(
            state="available", opts=pulumi.InvokeOutputOptions(parent=self)
        ).names
        blocks = list(cfg.vpc_cidr.subnets(new_prefix=20))
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, opts=vpc_opts)
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            opts=vpc_opts,
        )
        self.public_subnet_ids: list[pulumi.Output[str]] = []
        self.private_subnet_ids: list[pulumi.Output[str]] = []
        nat_ids: list[pulumi.Output[str]] = []
        for i in range(cfg.availability_zones):
            zone = zones[i]
            public = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=self.vpc.id,
                cidr_block=str(blocks[i]),
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-public-{i}", "kubernetes.io/role/elb": "1"},
                opts=vpc_opts,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}",
                subnet_id=public.id,
                route_table_id=public_routes.id,
                opts=vpc_opts,
            )
            if cfg.nat_gateway_per_az or i == 0:
                eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", opts=vpc_opts)
                nat = aws.ec2.NatGateway(
                    f"{name}-nat-{i}", subnet_id=public.id, allocation_id=eip.id, opts=vpc_opts
                )
                nat_ids.append(nat.id)
            private = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=self.vpc.id,
                cidr_block=str(blocks[8 + i]),
                availability_zone=zone,
                tags={"Name": f"{name}-private-{i}", "kubernetes.io/role/internal-elb": "1"},
                opts=vpc_opts,
            )
            private_routes = aws.ec2.RouteTable(
                f"{name}-private-{i}",
                vpc_id=self.vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat_ids[-1]}],
                opts=vpc_opts,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}",
                subnet_id=private.id,
                route_table_id=private_routes.id,
                opts=vpc_opts,
            )
            self.public_subnet_ids.append(public.id)
            self.private_subnet_ids.append(private.id)

        # Workloads: Lambdas and media nodes. Data stores: one port each, from workloads only.
        self.lambda_sg = self._group(name, "lambdas", "Parley Lambda functions")
        self.media_sg = self._group(name, "media-nodes", "Parley media nodes (EKS)")
        self.database_sg = self._group(name, "database", "RDS PostgreSQL")
        self.cache_sg = self._group(name, "cache", "ElastiCache Redis")
        self.kafka_sg = self._group(name, "kafka", "MSK brokers")
        workloads = {"lambdas": self.lambda_sg, "media": self.media_sg}
        for store, group, port in (
            ("database", self.database_sg, POSTGRES_PORT),
            ("cache", self.cache_sg, REDIS_PORT),
            ("kafka", self.kafka_sg, KAFKA_IAM_PORT),
        ):
            for source_name, source in workloads.items():
                self._allow(f"{name}-{store}-from-{source_name}", group, source, port)
                self._egress(f"{name}-{source_name}-to-{store}", source, group, port)
        # MSK event source mappings reach the brokers through ENIs in the brokers' own group.
        self._allow(f"{name}-kafka-from-self", self.kafka_sg, self.kafka_sg, KAFKA_IAM_PORT)
        self._egress(f"{name}-kafka-to-self", self.kafka_sg, self.kafka_sg, KAFKA_IAM_PORT)
        # The NLB (TLS terminated at 443) reaches pods from inside the VPC only.
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-media-from-vpc",
            security_group_id=self.media_sg.id,
            cidr_ipv4=str(cfg.vpc_cidr),
            ip_protocol="tcp",
            from_port=MEDIA_PORT,
            to_port=MEDIA_PORT,
            description="NLB to media pods",
            opts=pulumi.ResourceOptions(parent=self.media_sg),
        )
        # The Lambdas' trace load balancer (internal NLB, TLS on 443) reaches the collector pods.
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-otlp-from-vpc",
            security_group_id=self.media_sg.id,
            cidr_ipv4=str(cfg.vpc_cidr),
            ip_protocol="tcp",
            from_port=OTLP_HTTP_PORT,
            to_port=OTLP_HTTP_PORT,
            description="internal NLB to the trace collector",
            opts=pulumi.ResourceOptions(parent=self.media_sg),
        )
        # Lambdas call AWS APIs, Twilio and the LLM over HTTPS.
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-lambdas-https",
            security_group_id=self.lambda_sg.id,
            cidr_ipv4="0.0.0.0/0",
            ip_protocol="tcp",
            from_port=HTTPS_PORT,
            to_port=HTTPS_PORT,
            description="HTTPS to AWS APIs, Twilio and the LLM",
            opts=pulumi.ResourceOptions(parent=self.lambda_sg),
        )
        self.register_outputs({"vpc_id": self.vpc.id})

    def _group(self, name: str, role: str, description: str) -> aws.ec2.SecurityGroup:
        return aws.ec2.SecurityGroup(
            f"{name}-{role}",
            vpc_id=self.vpc.id,
            description=description,
            tags={"Name": f"{name}-{role}"},
            opts=pulumi.ResourceOptions(parent=self.vpc),
        )

    @staticmethod
    def _allow(
        rule: str, group: aws.ec2.SecurityGroup, source: aws.ec2.SecurityGroup, port: int
    ) -> None:
        aws.vpc.SecurityGroupIngressRule(
            rule,
            security_group_id=group.id,
            referenced_security_group_id=source.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            opts=pulumi.ResourceOptions(parent=group),
        )

    @staticmethod
    def _egress(
        rule: str, group: aws.ec2.SecurityGroup, target: aws.ec2.SecurityGroup, port: int
    ) -> None:
        aws.vpc.SecurityGroupEgressRule(
            rule,
            security_group_id=group.id,
            referenced_security_group_id=target.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            opts=pulumi.ResourceOptions(parent=group),
        )
