"""A tiny OpenID Connect provider for tests: an RSA key that signs ID
tokens (RS256) and a loopback HTTP server with discovery, JWKS and a token
endpoint (authorization-code flow, client_secret_basic)."""
import base64
import http.server
import json
import threading
import urllib.parse


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class JwksServer:
    """Serves /jwks and /.well-known/openid-configuration on loopback."""

    def __init__(self):
        self.jwks = {"keys": []}
        self.codes = {}  # authorization code -> id_token the token endpoint returns
        self.basic = None  # expected "Authorization: Basic ..." value
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.endswith("/jwks"):
                    body = json.dumps(server.jwks).encode()
                elif self.path.endswith("/.well-known/openid-configuration"):
                    body = json.dumps({"issuer": server.issuer, "jwks_uri": server.issuer + "/jwks",
                                       "authorization_endpoint": server.issuer + "/auth",
                                       "token_endpoint": server.issuer + "/token"}).encode()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                code = form.get("code", [""])[0]
                ok = (self.path.endswith("/token") and form.get("grant_type") == ["authorization_code"]
                      and self.headers.get("Authorization") == server.basic and code in server.codes)
                body = json.dumps({"id_token": server.codes.pop(code), "token_type": "Bearer",
                                   "access_token": "opaque"} if ok else {"error": "invalid_grant"}).encode()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = "http://127.0.0.1:%d/idp" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()


class RsaKey:
    def __init__(self, kid):
        from cryptography.hazmat.primitives.asymmetric import rsa
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self):
        n = self.key.public_key().public_numbers()
        return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                "n": b64url(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
                "e": b64url(n.e.to_bytes((n.e.bit_length() + 7) // 8, "big"))}

    def sign(self, claims, kid=None):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        header = {"alg": "RS256", "typ": "JWT", "kid": kid or self.kid}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)
