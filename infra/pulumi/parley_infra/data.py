"""Data: RDS PostgreSQL, ElastiCache Redis, MSK Kafka, the recordings and the exports buckets.

All private (no public endpoint, private subnets, one-port security groups from network.py), all
encrypted at rest with the stack's data KMS key and in transit (PostgreSQL force_ssl, Redis TLS +
AUTH, Kafka TLS + IAM auth, S3 TLS-only policy).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pulumi
import pulumi_aws as aws

from .config import StackConfig
from .network import KAFKA_IAM_PORT, POSTGRES_PORT, REDIS_PORT, Network

DATABASE_NAME = "parley"
DATABASE_USER = "parley"
EXPORTS_PREFIX = "exports"
# The job sweep deletes an export's file when PARLEY_EXPORT_TTL_S (at most 7 days) is over; the
# bucket's own expiry is the backstop for a file the sweep never saw.
EXPORT_EXPIRE_DAYS = 8


class Data(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        network: Network,
        database_password: pulumi.Output[str],
        redis_auth_token: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("parley:infra:Data", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"Parley {pulumi.get_stack()} data at rest",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=child,
        )
        self._postgres(name, cfg, network, database_password, child)
        self._redis(name, cfg, network, redis_auth_token, child)
        self._kafka(name, cfg, network, child)
        self._recordings(name, cfg, child)
        self.exports = private_bucket(
            f"{name}-exports", self.key, EXPORT_EXPIRE_DAYS, child, rule="exports"
        )
        self.export_store = self.exports.bucket.apply(lambda b: f"s3://{b}/{EXPORTS_PREFIX}")
        self.register_outputs({"database_address": self.database.address})

    def _postgres(
        self,
        name: str,
        cfg: StackConfig,
        network: Network,
        password: pulumi.Output[str],
        child: pulumi.ResourceOptions,
    ) -> None:
        db = cfg.database
        subnets = aws.rds.SubnetGroup(
            f"{name}-db", subnet_ids=network.private_subnet_ids, opts=child
        )
        major = db.engine_version.split(".")[0]
        params = aws.rds.ParameterGroup(
            f"{name}-db",
            family=f"postgres{major}",
            parameters=[
                {"name": "rds.force_ssl", "value": "1"},
                {"name": "log_min_duration_statement", "value": "500"},
            ],
            opts=child,
        )
        self.database = aws.rds.Instance(
            f"{name}-db",
            engine="postgres",
            engine_version=db.engine_version,
            instance_class=db.instance_class,
            allocated_storage=db.allocated_storage_gb,
            max_allocated_storage=db.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=self.key.arn,
            db_name=DATABASE_NAME,
            username=DATABASE_USER,
            password=password,
            port=POSTGRES_PORT,
            db_subnet_group_name=subnets.name,
            parameter_group_name=params.name,
            vpc_security_group_ids=[network.database_sg.id],
            publicly_accessible=False,
            multi_az=db.multi_az,
            backup_retention_period=db.backup_retention_days,
            deletion_protection=db.deletion_protection,
            skip_final_snapshot=not db.deletion_protection,
            final_snapshot_identifier=f"{name}-db-final" if db.deletion_protection else None,
            copy_tags_to_snapshot=True,
            iam_database_authentication_enabled=True,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=self.key.arn,
            enabled_cloudwatch_logs_exports=["postgresql"],
            auto_minor_version_upgrade=True,
            opts=child,
        )
        # Secret because the password is: Pulumi keeps secrecy through format().
        self.database_url: pulumi.Output[str] = pulumi.Output.format(
            "postgresql://{0}:{1}@{2}:{3}/{4}?sslmode=require",
            DATABASE_USER,
            password.apply(_url_safe),
            self.database.address,
            POSTGRES_PORT,
            DATABASE_NAME,
        )

    def _redis(
        self,
        name: str,
        cfg: StackConfig,
        network: Network,
        auth_token: pulumi.Output[str],
        child: pulumi.ResourceOptions,
    ) -> None:
        redis = cfg.redis
        subnets = aws.elasticache.SubnetGroup(
            f"{name}-cache", subnet_ids=network.private_subnet_ids, opts=child
        )
        failover = redis.nodes > 1
        self.cache = aws.elasticache.ReplicationGroup(
            f"{name}-cache",
            description="Parley sessions, media-node registry, rate limits",
            engine="redis",
            engine_version=redis.engine_version,
            node_type=redis.node_type,
            num_cache_clusters=redis.nodes,
            automatic_failover_enabled=failover,
            multi_az_enabled=failover,
            port=REDIS_PORT,
            subnet_group_name=subnets.name,
            security_group_ids=[network.cache_sg.id],
            at_rest_encryption_enabled=True,
            kms_key_id=self.key.arn,
            transit_encryption_enabled=True,
            auth_token=auth_token,
            snapshot_retention_limit=redis.snapshot_retention_days,
            auto_minor_version_upgrade=True,
            opts=child,
        )
        self.redis_url: pulumi.Output[str] = pulumi.Output.format(
            "rediss://:{0}@{1}:{2}/0",
            auth_token.apply(_url_safe),
            self.cache.primary_endpoint_address,
            REDIS_PORT,
        )

    def _kafka(
        self, name: str, cfg: StackConfig, network: Network, child: pulumi.ResourceOptions
    ) -> None:
        kafka = cfg.kafka
        brokers = kafka.brokers_per_az * cfg.network.availability_zones
        min_insync = max(1, kafka.replication_factor - 1)
        server_properties = "\n".join(
            [
                "auto.create.topics.enable=false",
                f"default.replication.factor={kafka.replication_factor}",
                f"min.insync.replicas={min_insync}",
                "unclean.leader.election.enable=false",
            ]
        )
        settings = aws.msk.Configuration(
            f"{name}-kafka",
            kafka_versions=[kafka.version],
            server_properties=server_properties,
            opts=child,
        )
        logs = aws.cloudwatch.LogGroup(
            f"{name}-kafka", retention_in_days=cfg.functions.log_retention_days, opts=child
        )
        self.kafka = aws.msk.Cluster(
            f"{name}-kafka",
            kafka_version=kafka.version,
            number_of_broker_nodes=brokers,
            broker_node_group_info={
                "instance_type": kafka.broker_instance_type,
                "client_subnets": network.private_subnet_ids,
                "security_groups": [network.kafka_sg.id],
                "storage_info": {"ebs_storage_info": {"volume_size": kafka.storage_gb}},
            },
            configuration_info={"arn": settings.arn, "revision": settings.latest_revision},
            encryption_info={
                "encryption_at_rest_kms_key_arn": self.key.arn,
                "encryption_in_transit": {"client_broker": "TLS", "in_cluster": True},
            },
            client_authentication={"sasl": {"iam": True}, "unauthenticated": False},
            logging_info={
                "broker_logs": {"cloudwatch_logs": {"enabled": True, "log_group": logs.name}}
            },
            opts=child,
        )
        self.kafka_topics = {
            topic.name: aws.msk.Topic(
                f"{name}-topic-{topic.name}",
                cluster_arn=self.kafka.arn,
                name=topic.name,
                partition_count=topic.partitions,
                replication_factor=kafka.replication_factor,
                opts=pulumi.ResourceOptions(parent=self.kafka),
            )
            for topic in kafka.topics
        }
        self.kafka_bootstrap = self.kafka.bootstrap_brokers_sasl_iam
        self.kafka_port = KAFKA_IAM_PORT

    def _recordings(self, name: str, cfg: StackConfig, child: pulumi.ResourceOptions) -> None:
        self.recordings = private_bucket(
            f"{name}-recordings", self.key, cfg.recording_retention_days, child, rule="recordings"
        )


def private_bucket(
    name: str,
    key: aws.kms.Key,
    expire_days: int,
    opts: pulumi.ResourceOptions,
    *,
    rule: str,
) -> aws.s3.Bucket:
    """A bucket nobody outside the account reads: no public access, KMS at rest, TLS only, and
    objects expired after ``expire_days``."""
    bucket = aws.s3.Bucket(name, force_destroy=False, opts=opts)
    bucket_opts = pulumi.ResourceOptions(parent=bucket)
    aws.s3.BucketPublicAccessBlock(
        name,
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=bucket_opts,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        name,
        bucket=bucket.id,
        rules=[
            {
                "apply_server_side_encryption_by_default": {
                    "sse_algorithm": "aws:kms",
                    "kms_master_key_id": key.arn,
                },
                "bucket_key_enabled": True,
            }
        ],
        opts=bucket_opts,
    )
    aws.s3.BucketLifecycleConfiguration(
        name,
        bucket=bucket.id,
        rules=[
            {
                "id": f"expire-{rule}",
                "status": "Enabled",
                "filter": {"prefix": ""},
                "expiration": {"days": expire_days},
            }
        ],
        opts=bucket_opts,
    )
    aws.s3.BucketPolicy(
        name, bucket=bucket.id, policy=bucket.arn.apply(_tls_only_policy), opts=bucket_opts
    )
    return bucket


def _url_safe(secret: str) -> str:
    return quote(secret, safe="")


def _tls_only_policy(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyPlainHttp",
                    "Effect": "Deny",
                    "Principal": {"AWS": "*"},
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )
