"""The recordings tests' stand-ins do what they say: Vonage's media host (support.media_standin) serves a recording
to the application's JWT only and fails in each way on demand, and the S3 server (support.s3_server) stores objects,
refuses for a while without losing them, and loses them when restarted."""

import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import botocore.exceptions
import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from support import keys
from support.media_standin import Catcher, MediaStandIn
from support.s3_server import S3Server

APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
RECORDING = bytes(range(256)) * 40  # 10 240 bytes, no two neighbours alike


def application_jwt(key=None, **claims) -> str:
    """An application JWT as Vonage's SDK makes one, signed with `key` (the application's by default)."""
    now = int(time.time())
    payload = {"application_id": APPLICATION_ID, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4()), **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key or keys.rsa_key(), algorithm="RS256")


def bearer(token: str | None = None) -> dict:
    return {"Authorization": f"Bearer {token or application_jwt()}"}


@pytest.fixture
def media(certificate):
    stand_in = MediaStandIn(certificate, keys.rsa_key().public_key())
    yield stand_in
    stand_in.close()


@pytest.fixture
def catcher(certificate):
    caught = Catcher(certificate)
    yield caught
    caught.close()


@pytest.fixture
def get(certificate):
    """GET over HTTPS, trusting the stand-ins' certificate."""

    def fetch(url: str, headers: dict | None = None, **options) -> requests.Response:
        return requests.get(url, headers=headers or {}, verify=str(certificate[0]), timeout=10, **options)

    return fetch


# --- the media host: serving and the JWT check ---


def test_media_serves_a_recording_to_the_application_jwt_as_mpeg(media, get):
    url = media.add("rec-1", RECORDING)
    response = get(url, bearer())
    assert url == f"https://{media.host}/v1/files/rec-1"
    assert response.status_code == 200
    assert response.content == RECORDING
    assert response.headers["Content-Type"] == "audio/mpeg"
    assert response.headers["Content-Length"] == str(len(RECORDING))


def test_media_serves_an_id_ending_in_wav_as_wav(media, get):
    response = get(media.add("rec-2.wav", b"RIFF...."), bearer())
    assert response.headers["Content-Type"] == "audio/wav"


def test_media_records_each_request_with_its_authorization(media, get):
    token = application_jwt()
    get(media.add("rec-1", RECORDING), bearer(token))
    get(media.url("/v1/files/rec-1"))
    seen = [
        (request.method, request.path, request.authorization, request.answer) for request in media.requests_for("rec-1")
    ]
    assert seen == [
        ("GET", "/v1/files/rec-1", f"Bearer {token}", "200"),
        ("GET", "/v1/files/rec-1", None, "401"),
    ]


def another_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


REFUSED_TOKENS = {
    "no-header": lambda: None,
    "signed-by-another-key": lambda: application_jwt(another_key()),
    "expired": lambda: application_jwt(iat=int(time.time()) - 600, exp=int(time.time()) - 300),
    "no-application-id": lambda: application_jwt(application_id=None),
    "no-jti": lambda: application_jwt(jti=None),
    "not-a-jwt": lambda: "not.a.jwt",
}


@pytest.mark.parametrize("case", REFUSED_TOKENS)
def test_media_refuses_anything_but_a_valid_application_jwt_with_401(media, get, case):
    token = REFUSED_TOKENS[case]()
    response = get(media.add("rec-1", RECORDING), {"Authorization": f"Bearer {token}"} if token else {})
    assert response.status_code == 401
    assert response.json()["title"] == "Unauthorized"
    assert media.requests_for("rec-1")[0].answer == "401"


def test_media_refuses_a_jwt_for_another_application_when_it_knows_the_id(certificate, get):
    with MediaStandIn(certificate, keys.rsa_key(), application_id=APPLICATION_ID) as media:
        url = media.add("rec-1", RECORDING)
        assert get(url, bearer(application_jwt(application_id="another-app"))).status_code == 401
        assert get(url, bearer()).status_code == 200


def test_media_answers_404_for_an_unknown_recording(media, get):
    response = get(media.url("/v1/files/no-such-recording"), bearer())
    assert response.status_code == 404
    assert response.json()["title"] == "Not Found"


# --- the media host: failures on demand ---


@pytest.mark.parametrize("kind", ["500", "503", "401"])
def test_media_fails_the_next_requests_with_the_status_then_serves(media, get, kind):
    url = media.add("rec-1", RECORDING)
    media.fail("rec-1", kind, times=2)
    statuses = [get(url, bearer()).status_code for _ in range(3)]
    assert statuses == [int(kind), int(kind), 200]


def test_media_failure_is_for_its_recording_only(media, get):
    media.fail("rec-1", "500")
    other = media.add("rec-2", RECORDING)
    assert get(other, bearer()).status_code == 200


def test_media_rate_limit_carries_retry_after(media, get):
    url = media.add("rec-1", RECORDING)
    media.fail("rec-1", "429")
    media.fail("rec-1", "429", retry_after=30)
    first, second = get(url, bearer()), get(url, bearer())
    assert (first.status_code, first.headers["Retry-After"]) == (429, "1")
    assert (second.status_code, second.headers["Retry-After"]) == (429, "30")


def test_media_cut_body_raises_in_the_client(media, get):
    url = media.add("rec-1", RECORDING)
    media.fail("rec-1", "cut", sent=1000)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(url, bearer())
    assert get(url, bearer()).content == RECORDING


def test_media_cut_announces_the_whole_length(media, get):
    media.fail("rec-1", "cut")
    with get(media.add("rec-1", RECORDING), bearer(), stream=True) as response:
        assert response.headers["Content-Length"] == str(len(RECORDING))


def test_media_short_body_is_a_complete_response_with_fewer_bytes(media, get):
    url = media.add("rec-1", RECORDING)
    media.fail("rec-1", "short", sent=1000)
    response = get(url, bearer())
    assert response.status_code == 200
    assert response.content == RECORDING[:1000]
    assert response.headers["Content-Length"] == "1000"


def test_media_slow_holds_the_request_until_released(media, get):
    url = media.add("rec-1", RECORDING)
    media.fail("rec-1", "slow")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(get, url, bearer())
        media.wait_for("rec-1")
        held = answer.done()
        media.release("rec-1")
        assert answer.result().content == RECORDING
    assert held is False


def test_media_slow_request_is_dropped_unanswered_at_close(media, get):
    url = media.add("rec-1", RECORDING)
    media.fail("rec-1", "slow")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(get, url, bearer())
        media.wait_for("rec-1")
        media.close()
        with pytest.raises(requests.exceptions.ConnectionError):
            answer.result()


def test_media_redirect_names_the_location(media, catcher, get):
    url = media.add("rec-1", RECORDING)
    media.fail("rec-1", "redirect", location=catcher.url("/stolen"))
    response = get(url, bearer(), allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"] == catcher.url("/stolen")


def test_catcher_records_the_authorization_it_is_sent(catcher, get):
    token = application_jwt()
    response = get(catcher.url("/v1/files/rec-1"), bearer(token))
    assert response.status_code == 200
    assert catcher.authorizations() == [f"Bearer {token}"]
    assert [request.path for request in catcher.requests] == ["/v1/files/rec-1"]


def test_catcher_sees_no_jwt_from_a_client_that_drops_it_on_a_redirect(media, catcher, get):
    """requests drops Authorization on a redirect to another host: what the catcher records shows it."""
    url = media.add("rec-1", RECORDING)
    media.fail("rec-1", "redirect", location=catcher.url("/stolen"))
    get(url, bearer())
    assert [request.path for request in catcher.requests] == ["/stolen"]
    assert catcher.authorizations() == []


def test_catcher_serves_plain_http_when_asked(certificate):
    with Catcher(certificate, tls=False) as catcher:
        response = requests.get(catcher.url("/x"), timeout=10)
    assert catcher.url().startswith("http://")
    assert response.content == b"not the recording"


# --- the S3 server ---


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


@pytest.fixture
def bucket(s3):
    name = f"recordings-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(name)
    return name


def test_s3_stores_and_returns_an_object(s3, bucket):
    s3.client().put_object(Bucket=bucket, Key="calls/rec-1.mp3", Body=RECORDING)
    assert s3.objects(bucket) == {"calls/rec-1.mp3": RECORDING}


def test_s3_refuses_while_unavailable_and_keeps_its_data(s3, bucket):
    client = s3.client()
    client.put_object(Bucket=bucket, Key="before", Body=b"1")
    with s3.unavailable():
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            client.put_object(Bucket=bucket, Key="during", Body=b"2")
    client.put_object(Bucket=bucket, Key="after", Body=b"3")
    assert s3.objects(bucket) == {"before": b"1", "after": b"3"}


def test_s3_hung_accepts_and_does_not_answer(s3, bucket):
    s3.client().put_object(Bucket=bucket, Key="before", Body=b"1")
    with s3.hung():
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            s3.client(timeout=0.5).list_objects_v2(Bucket=bucket)
    assert s3.objects(bucket) == {"before": b"1"}


def test_s3_aws_env_points_a_child_process_at_the_server(s3, bucket):
    script = "import boto3, sys; boto3.client('s3').put_object(Bucket=sys.argv[1], Key='child', Body=b'from a child')"
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-c", script, bucket], env={**env, **s3.aws_env()}, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert s3.objects(bucket) == {"child": b"from a child"}


def test_s3_restart_refuses_in_between_and_loses_the_data():
    with S3Server() as server:
        server.create_bucket("kept-or-not")
        server.stop()
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            server.client().list_buckets()
        server.start()
        assert server.client().list_buckets()["Buckets"] == []
