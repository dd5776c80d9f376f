"""A Terraform provider test double shaped like AWS's: the resource types, attributes and ids
that cost estimates read (instance_type, volume size, RDS class and engine, region), kept in
memory of the state alone. It creates nothing anywhere; ids and ARNs are derived from the
resource's attributes so tests can predict them.

Runs under the `tf` framework (PyPI), which speaks Terraform's plugin protocol 6.
"""
import hashlib
import sys
from typing import Optional, Type

from tf import runner, schema, types
from tf.iface import (
    Config,
    CreateContext,
    DataSource,
    DeleteContext,
    ReadContext,
    Resource,
    State,
    UpdateContext,
)
from tf.provider import Provider
from tf.utils import Diagnostics

REGION = {"value": "us-east-1"}
ACCOUNT = "123456789012"


def short_id(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:17]


class Base(Resource):
    """Create fills the computed id (and arn); update keeps them; nothing else is remote."""

    prefix = ""
    arn_service = ""
    arn_kind = ""

    def __init__(self, provider: "AwsDouble"):
        self.provider = provider

    def identity(self, planned: State) -> str:
        return self.prefix + short_id(self.get_name(), sorted((k, str(v)) for k, v in planned.items() if k not in ("id", "arn")))

    def create(self, ctx: CreateContext, planned: State) -> Optional[State]:
        state = dict(planned)
        state["id"] = self.identity(planned)
        if "arn" in {a.name for a in self.get_schema().attributes}:
            state["arn"] = f"arn:aws:{self.arn_service}:{REGION['value']}:{ACCOUNT}:{self.arn_kind}{state['id']}"
        self.fill(state)
        return state

    def fill(self, state: State) -> None:
        pass

    def read(self, ctx: ReadContext, current: State) -> Optional[State]:
        return current

    def update(self, ctx: UpdateContext, current: State, planned: State) -> Optional[State]:
        state = dict(planned)
        state["id"] = current["id"]
        if "arn" in current:
            state["arn"] = current["arn"]
        self.fill(state)
        return state

    def delete(self, ctx: DeleteContext, current: State):
        return None


def tags_attribute() -> schema.Attribute:
    return schema.Attribute("tags", types.Map(types.String()), optional=True)


class Instance(Base):
    prefix = "i-"
    arn_service = "ec2"
    arn_kind = "instance/"

    @classmethod
    def get_name(cls) -> str:
        return "instance"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                schema.Attribute("id", types.String(), computed=True),
                schema.Attribute("arn", types.String(), computed=True),
                schema.Attribute("ami", types.String(), required=True, requires_replace=True),
                schema.Attribute("instance_type", types.String(), required=True),
                schema.Attribute("availability_zone", types.String(), optional=True),
                schema.Attribute("tenancy", types.String(), optional=True),
                tags_attribute(),
            ]
        )


class EbsVolume(Base):
    prefix = "vol-"
    arn_service = "ec2"
    arn_kind = "volume/"

    @classmethod
    def get_name(cls) -> str:
        return "ebs_volume"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                schema.Attribute("id", types.String(), computed=True),
                schema.Attribute("arn", types.String(), computed=True),
                schema.Attribute("availability_zone", types.String(), required=True),
                schema.Attribute("size", types.Number(), optional=True),
                schema.Attribute("type", types.String(), optional=True),
                schema.Attribute("iops", types.Number(), optional=True),
                tags_attribute(),
            ]
        )


class DbInstance(Base):
    prefix = "db-"
    arn_service = "rds"
    arn_kind = "db:"

    @classmethod
    def get_name(cls) -> str:
        return "db_instance"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                schema.Attribute("id", types.String(), computed=True),
                schema.Attribute("arn", types.String(), computed=True),
                schema.Attribute("identifier", types.String(), optional=True),
                schema.Attribute("engine", types.String(), required=True),
                schema.Attribute("instance_class", types.String(), required=True),
                schema.Attribute("allocated_storage", types.Number(), optional=True),
                schema.Attribute("storage_type", types.String(), optional=True),
                schema.Attribute("multi_az", types.Bool(), optional=True),
                schema.Attribute("password", types.String(), optional=True, sensitive=True),
                tags_attribute(),
            ]
        )


class NatGateway(Base):
    prefix = "nat-"

    @classmethod
    def get_name(cls) -> str:
        return "nat_gateway"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                schema.Attribute("id", types.String(), computed=True),
                schema.Attribute("subnet_id", types.String(), required=True),
                schema.Attribute("connectivity_type", types.String(), optional=True),
                tags_attribute(),
            ]
        )


class Bucket(Base):
    """A type no price rule covers: estimates must list it as unpriced."""

    arn_service = "s3"

    @classmethod
    def get_name(cls) -> str:
        return "s3_bucket"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                schema.Attribute("id", types.String(), computed=True),
                schema.Attribute("arn", types.String(), computed=True),
                schema.Attribute("bucket", types.String(), required=True, requires_replace=True),
                tags_attribute(),
            ]
        )

    def identity(self, planned: State) -> str:
        return planned["bucket"]

    def create(self, ctx: CreateContext, planned: State) -> Optional[State]:
        state = dict(planned)
        state["id"] = planned["bucket"]
        state["arn"] = f"arn:aws:s3:::{planned['bucket']}"
        return state


class AwsDouble(Provider):
    def __init__(self, full_name: str):
        self.name = full_name

    def full_name(self) -> str:
        return self.name

    def get_model_prefix(self) -> str:
        return "aws_"

    def get_provider_schema(self, diags: Diagnostics) -> schema.Schema:
        return schema.Schema(attributes=[schema.Attribute("region", types.String(), optional=True)])

    def validate_config(self, diags: Diagnostics, config: Config):
        pass

    def configure_provider(self, diags: Diagnostics, config: Config):
        if config.get("region"):
            REGION["value"] = config["region"]

    def get_data_sources(self) -> list[Type[DataSource]]:
        return []

    def get_resources(self) -> list[Type[Resource]]:
        return [Instance, EbsVolume, DbInstance, NatGateway, Bucket]


if __name__ == "__main__":
    runner.run_provider(AwsDouble("terrace.test/terrace-test/aws"), sys.argv)
