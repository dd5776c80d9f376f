#!/usr/bin/env python3
"""Writes a valid Terraform state (format version 4) of roughly SIZE bytes.

    gen-state.py SIZE OUT [--serial N] [--lineage UUID] [--seed S]

SIZE takes a K/M suffix (powers of 1024). The document looks like what Terraform 1.0 writes
for an AWS estate: two-space indentation, outputs, and managed resources (instances,
security groups, subnets, S3 buckets, IAM roles) with their attributes, private data and
dependencies. Resources are added while the file stays within SIZE, so it ends up a few KB under.
The output is deterministic for a given seed.
"""

import argparse
import base64
import json
import random
import sys
import uuid

AWS = 'provider["registry.terraform.io/hashicorp/aws"]'
REGIONS = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


def parse_size(text):
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = text.strip().upper().rstrip("B").rstrip("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def hexid(rng, n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def tags(rng, name):
    return {
        "Name": name,
        "environment": rng.choice(["prod", "staging", "dev"]),
        "owner": rng.choice(["platform", "payments", "search", "data"]),
        "managed-by": "terraform",
    }


def instance(rng, i):
    name = f"app_{i:06d}"
    ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    iid = "i-" + hexid(rng, 17)
    return "aws_instance", name, 1, {
        "ami": "ami-" + hexid(rng, 17),
        "arn": f"arn:aws:ec2:eu-west-1:123456789012:instance/{iid}",
        "associate_public_ip_address": False,
        "availability_zone": rng.choice(REGIONS),
        "cpu_core_count": 2,
        "cpu_threads_per_core": 2,
        "disable_api_termination": False,
        "ebs_block_device": [],
        "ebs_optimized": True,
        "get_password_data": False,
        "iam_instance_profile": f"app-{i:06d}",
        "id": iid,
        "instance_state": "running",
        "instance_type": rng.choice(["t3.medium", "m5.large", "c5.xlarge", "r5.large"]),
        "key_name": "deploy",
        "metadata_options": [
            {"http_endpoint": "enabled", "http_put_response_hop_limit": 1, "http_tokens": "required"}
        ],
        "monitoring": True,
        "primary_network_interface_id": "eni-" + hexid(rng, 17),
        "private_dns": f"ip-{ip.replace('.', '-')}.eu-west-1.compute.internal",
        "private_ip": ip,
        "root_block_device": [
            {
                "delete_on_termination": True,
                "device_name": "/dev/xvda",
                "encrypted": True,
                "iops": 3000,
                "kms_key_id": f"arn:aws:kms:eu-west-1:123456789012:key/{uuid.UUID(int=rng.getrandbits(128))}",
                "throughput": 125,
                "volume_id": "vol-" + hexid(rng, 17),
                "volume_size": rng.choice([20, 50, 100]),
                "volume_type": "gp3",
            }
        ],
        "security_groups": [],
        "subnet_id": "subnet-" + hexid(rng, 17),
        "tags": tags(rng, name),
        "tenancy": "default",
        "user_data": hexid(rng, 40),
        "vpc_security_group_ids": ["sg-" + hexid(rng, 17) for _ in range(2)],
    }


def security_group(rng, i):
    name = f"svc_{i:06d}"
    sid = "sg-" + hexid(rng, 17)
    rules = [
        {
            "cidr_blocks": [f"10.{rng.randrange(256)}.0.0/16"],
            "description": f"port {port}",
            "from_port": port,
            "ipv6_cidr_blocks": [],
            "prefix_list_ids": [],
            "protocol": "tcp",
            "security_groups": [],
            "self": False,
            "to_port": port,
        }
        for port in rng.sample([22, 80, 443, 5432, 6379, 8080, 9090], 3)
    ]
    return "aws_security_group", name, 1, {
        "arn": f"arn:aws:ec2:eu-west-1:123456789012:security-group/{sid}",
        "description": f"Managed by Terraform for {name}",
        "egress": [rules[0]],
        "id": sid,
        "ingress": rules,
        "name": name.replace("_", "-"),
        "owner_id": "123456789012",
        "revoke_rules_on_delete": False,
        "tags": tags(rng, name),
        "timeouts": None,
        "vpc_id": "vpc-" + hexid(rng, 17),
    }


def subnet(rng, i):
    name = f"net_{i:06d}"
    sid = "subnet-" + hexid(rng, 17)
    return "aws_subnet", name, 1, {
        "arn": f"arn:aws:ec2:eu-west-1:123456789012:subnet/{sid}",
        "assign_ipv6_address_on_creation": False,
        "availability_zone": rng.choice(REGIONS),
        "cidr_block": f"10.{rng.randrange(256)}.{rng.randrange(256)}.0/24",
        "id": sid,
        "map_public_ip_on_launch": False,
        "owner_id": "123456789012",
        "tags": tags(rng, name),
        "vpc_id": "vpc-" + hexid(rng, 17),
    }


def bucket(rng, i):
    name = f"logs-{i:06d}-{hexid(rng, 8)}"
    return "aws_s3_bucket", f"bucket_{i:06d}", 0, {
        "acl": "private",
        "arn": f"arn:aws:s3:::{name}",
        "bucket": name,
        "bucket_domain_name": f"{name}.s3.amazonaws.com",
        "force_destroy": False,
        "hosted_zone_id": "Z1BKCTXD74EZPE",
        "id": name,
        "lifecycle_rule": [
            {"enabled": True, "expiration": [{"days": 90}], "id": "expire", "prefix": ""}
        ],
        "region": "eu-west-1",
        "server_side_encryption_configuration": [
            {"rule": [{"apply_server_side_encryption_by_default": [{"sse_algorithm": "aws:kms"}]}]}
        ],
        "tags": tags(rng, name),
        "versioning": [{"enabled": True, "mfa_delete": False}],
    }


def role(rng, i):
    name = f"role-{i:06d}"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}}
        ],
    }
    return "aws_iam_role", f"role_{i:06d}", 0, {
        "arn": f"arn:aws:iam::123456789012:role/{name}",
        "assume_role_policy": json.dumps(policy, separators=(",", ":")),
        "create_date": "2021-07-28T09:14:03Z",
        "description": "",
        "force_detach_policies": False,
        "id": name,
        "max_session_duration": 3600,
        "name": name,
        "path": "/",
        "tags": tags(rng, name),
        "unique_id": "AROA" + hexid(rng, 17).upper(),
    }


KINDS = [instance, security_group, subnet, bucket, role]
ADDRESSES = ["aws_instance.app", "aws_security_group.svc", "aws_subnet.net", "aws_s3_bucket.bucket", "aws_iam_role.role"]


def address(j):
    return f"{ADDRESSES[j % len(ADDRESSES)]}_{j:06d}"


def resource(rng, i):
    rtype, name, schema, attrs = KINDS[i % len(KINDS)](rng, i)
    deps = sorted({address(j) for j in rng.sample(range(i), min(i, 2))})
    private = base64.b64encode(json.dumps({"schema_version": str(schema), "id": attrs["id"]}).encode())
    return {
        "mode": "managed",
        "type": rtype,
        "name": name,
        "provider": AWS,
        "instances": [
            {
                "schema_version": schema,
                "attributes": attrs,
                "sensitive_attributes": [],
                "private": private.decode(),
                "dependencies": deps,
            }
        ],
    }


def indent(text, prefix):
    return "\n".join(prefix + line for line in text.split("\n"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("size")
    ap.add_argument("out")
    ap.add_argument("--serial", type=int, default=1)
    ap.add_argument("--lineage")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    target = parse_size(args.size)
    rng = random.Random(args.seed)
    lineage = args.lineage or str(uuid.UUID(int=rng.getrandbits(128), version=4))
    outputs = {
        "vpc_id": {"value": "vpc-" + hexid(rng, 17), "type": "string"},
        "region": {"value": "eu-west-1", "type": "string"},
        "db_password": {"value": hexid(rng, 32), "type": "string", "sensitive": True},
    }
    head = (
        "{\n"
        '  "version": 4,\n'
        '  "terraform_version": "1.0.3",\n'
        f'  "serial": {args.serial},\n'
        f'  "lineage": "{lineage}",\n'
        f'  "outputs": {indent(json.dumps(outputs, indent=2), "  ").lstrip()},\n'
        '  "resources": ['
    )
    tail = "\n  ]\n}\n"

    written = 0
    with open(args.out, "w", encoding="ascii") as out:
        out.write(head)
        written += len(head)
        i = 0
        # The indented encoder is pure Python; reuse the text of a pool of resources with
        # fresh names once the pool is built, which keeps 200 MB under a few seconds.
        pool = []
        while True:
            if i < 64:
                text = indent(json.dumps(resource(rng, i), indent=2), "    ")
                pool.append((text, f"{i:06d}"))
            else:
                base, tag = pool[i % len(pool)]
                text = base.replace(tag, f"{i:06d}")
            sep = "\n" if i == 0 else ",\n"
            if i > 0 and written + len(sep) + len(text) + len(tail) > target:
                break
            out.write(sep + text)
            written += len(sep) + len(text)
            i += 1
        out.write(tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
