from support import call, echo_app


def test_echo_under_validator():
    result = call(echo_app, "/a?b=1", method="POST", body=b"hi")
    assert result.code == 200
    assert result.json()["body"] == "hi"


def test_live_server(live_server):
    from support import http_get
    url = live_server(echo_app)
    status, headers, body = http_get(url + "/x?y=2")
    assert status == 200 and b'"/x"' in body
