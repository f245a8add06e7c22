"""Deploys the AWS::SQS::Queue resources of a CloudFormation template to LocalStack as a stack.

Usage: create_topology.py TEMPLATE PREFIX ENDPOINT
"""

import json
import sys
import time

import boto3
import yaml


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short intrinsic tags (!Ref, !GetAtt, !Sub, ...)."""


def _intrinsic(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {"Fn::" + suffix: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def main():
    template_path, prefix, endpoint = sys.argv[1:4]
    with open(template_path) as f:
        template = yaml.load(f, Loader=CfnLoader)
    queues = {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::SQS::Queue"
    }
    if not queues:
        sys.exit(f"{template_path}: no AWS::SQS::Queue resources")
    parameters = {
        name: spec
        for name, spec in template["Parameters"].items()
        if name in json.dumps(queues)
    }
    body = {"AWSTemplateFormatVersion": "2010-09-09", "Parameters": parameters, "Resources": queues}
    cfn = boto3.client(
        "cloudformation",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    stack = f"{prefix}-queues"
    cfn.create_stack(
        StackName=stack,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": "QueuePrefix", "ParameterValue": prefix}],
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
        if status == "CREATE_COMPLETE":
            print(f"created stack {stack}: {len(queues)} queues with prefix {prefix}")
            return
        if status.endswith("FAILED") or status.startswith("ROLLBACK"):
            events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
            reasons = [e.get("ResourceStatusReason", "") for e in events if e.get("ResourceStatusReason")]
            sys.exit(f"stack {stack}: {status}: {reasons[:5]}")
        time.sleep(0.5)
    sys.exit(f"stack {stack}: not created within 120 s")


if __name__ == "__main__":
    main()
