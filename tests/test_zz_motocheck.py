import os
from moto import mock_aws
import boto3
import pytest

def test_x(ledger):
    with mock_aws(config={"core": {"mock_credentials": False, "passthrough": {"services": ["dynamodb"]}}}):
        ses = boto3.client("sesv2", region_name="us-east-1")
        ses.create_email_identity(EmailIdentity="billing@example.com")
        print(ledger.load("nobody"))
        r = ses.send_email(FromEmailAddress="billing@example.com", Destination={"ToAddresses": ["a@b.c"]},
            Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}})
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends
        print(r, len(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages))
