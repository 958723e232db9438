"""A throw-away CA and a server certificate for 127.0.0.1 (bench only): the fake upstream
served over wss://, as OpenAI's is, with the bridge trusting it through REALTIME_CA_FILE."""

from __future__ import annotations

from pathlib import Path

import trustme  # a test dependency: pip install -e '.[test]'


def throwaway_certs(directory: Path) -> tuple[Path, Path]:
    """(CA file for REALTIME_CA_FILE, the fake's certificate chain and key in one PEM)."""
    ca = trustme.CA()
    ca_file, server_pem = directory / "ca.pem", directory / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    return ca_file, server_pem
