"""A local CA and a certificate for the listeners, made once per data dir."""
import os
import subprocess


def ensure(tls_dir, names):
    """Returns (ca_cert, cert, key) paths, creating them at first start."""
    os.makedirs(tls_dir, exist_ok=True)
    ca_key = os.path.join(tls_dir, "ca.key")
    ca_cert = os.path.join(tls_dir, "ca.pem")
    key = os.path.join(tls_dir, "server.key")
    cert = os.path.join(tls_dir, "server.pem")
    if not os.path.exists(ca_cert):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", ca_key, "-out", ca_cert, "-days", "3650",
                 "-subj", "/CN=mailgrid local CA")
    if not os.path.exists(cert):
        csr = os.path.join(tls_dir, "server.csr")
        ext = os.path.join(tls_dir, "server.ext")
        sans = ",".join(("IP:" + n) if n[0].isdigit() else ("DNS:" + n) for n in names)
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" % sans)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", "/CN=" + names[0])
        _openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
                 "-CAcreateserial", "-out", cert, "-days", "825", "-extfile", ext)
    for path in (ca_key, key):
        os.chmod(path, 0o600)
    return ca_cert, cert, key


def _openssl(*args):
    subprocess.run(("openssl",) + args, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ensure_secrets(secrets_dir):
    """The token signing key pair and the DKIM master key, made once.

    Returns paths: token_private (PEM), token_public (PEM), dkim_master
    (32 random bytes as hex). All private files are mode 0600.
    """
    os.makedirs(secrets_dir, mode=0o700, exist_ok=True)
    private = os.path.join(secrets_dir, "token.pem")
    public = os.path.join(secrets_dir, "token.pub")
    dkim = os.path.join(secrets_dir, "dkim-master.key")
    if not os.path.exists(private):
        _openssl("genpkey", "-algorithm", "ed25519", "-out", private)
    if not os.path.exists(public):
        _openssl("pkey", "-in", private, "-pubout", "-out", public)
    if not os.path.exists(dkim):
        with open(dkim, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
    for path in (private, dkim):
        os.chmod(path, 0o600)
    return {"token_private": private, "token_public": public, "dkim_master": dkim}
