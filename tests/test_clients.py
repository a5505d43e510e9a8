"""Real clients through tunneld: curl, Python http.client, ncat, OpenBSD nc,
openssl s_client (DESIGN §11)."""

import http.client
import ssl
import subprocess

from conftest import HTTPS_BODY, clean_env

PAYLOAD = b"".join(b"line %04d through the tunnel\n" % i for i in range(500))


def run(cmd, data=b"", timeout=20):
    return subprocess.run(cmd, input=data, capture_output=True, timeout=timeout, env=clean_env())


def test_curl_https_through_proxy(any_proxy, https_target):
    r = run(["curl", "-sS", "--max-time", "10", "--proxy", f"http://127.0.0.1:{any_proxy.port}",
             "--cacert", https_target.cafile, f"https://good.test:{https_target.port}/"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == HTTPS_BODY
    assert b"GET / HTTP/1.1" in https_target.results[-1]


def test_curl_log_line(make_proxy, https_target):
    p = make_proxy("listen")
    r = run(["curl", "-sS", "--max-time", "10", "--proxy", f"http://127.0.0.1:{p.port}",
             "--cacert", https_target.cafile, f"https://good.test:{https_target.port}/"])
    assert r.returncode == 0, r.stderr
    target = f"good.test:{https_target.port}"
    fields = p.wait_log(lambda f: f.get("target") == target, what=target)
    assert fields["status"] == "200"
    assert fields["addr"] == f"127.0.0.1:{https_target.port}"
    assert fields["user"] == "-"
    assert fields["client"].startswith("127.0.0.1:")
    assert int(fields["up"]) > 100 and int(fields["down"]) > len(HTTPS_BODY)
    assert fields["ms"].isdigit()
    assert "reason" not in fields


def test_python_http_client_set_tunnel(any_proxy, https_target):
    ctx = ssl.create_default_context(cafile=https_target.cafile)
    conn = http.client.HTTPSConnection("127.0.0.1", any_proxy.port, timeout=10, context=ctx)
    conn.set_tunnel("good.test", https_target.port)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == HTTPS_BODY
    finally:
        conn.close()


def test_ncat_http_proxy(any_proxy, echo):
    r = run(["ncat", "--proxy", f"127.0.0.1:{any_proxy.port}", "--proxy-type", "http",
             "127.0.0.1", str(echo.port)], PAYLOAD)
    assert r.returncode == 0, r.stderr
    assert r.stdout == PAYLOAD


def test_openbsd_nc_connect_proxy(any_proxy, echo):
    # as ssh's ProxyCommand "nc -X connect -x proxy:port %h %p"; -N: EOF on
    # stdin shuts the socket down for writing, like ssh closing its side.
    r = run(["nc", "-N", "-X", "connect", "-x", f"127.0.0.1:{any_proxy.port}",
             "127.0.0.1", str(echo.port)], PAYLOAD)
    assert r.returncode == 0, r.stderr
    assert r.stdout == PAYLOAD


def test_openssl_s_client_proxy(any_proxy, https_target):
    r = run(["openssl", "s_client", "-quiet", "-proxy", f"127.0.0.1:{any_proxy.port}",
             "-connect", f"good.test:{https_target.port}", "-servername", "good.test",
             "-CAfile", https_target.cafile, "-verify_return_error"],
            b"GET / HTTP/1.1\r\nHost: good.test\r\nConnection: close\r\n\r\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(HTTPS_BODY), r.stdout
