"""A workspace full of (fake) secrets, and a check that none of them left the machine.

Reusable by every remote-path test (completion, actions, explain): `build(root)` writes the
files and returns each secret by kind; `assert_no_secrets(texts, ws)` fails naming the kind and
where it leaked. The values are generated here, not committed: they have the real formats (so
detect-secrets knows them) but random, obviously fake bodies.
"""

from __future__ import annotations

import base64
import json
import os
import random
import string
from collections.abc import Iterable
from pathlib import Path

import msgspec


class SecretWorkspace(msgspec.Struct, kw_only=True):
    """The written workspace: its root, the secret values by kind, and the notable files."""

    root: Path
    secrets: dict[str, str]
    settings_py: Path
    app_py: Path
    env_file: Path
    keys_py: Path
    link_py: Path


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def make_secrets(seed: int = 11) -> dict[str, str]:
    """One value per kind of secret; the kinds are the ones the issue lists, and a few more."""
    rng = random.Random(seed)
    alnum, upper = string.ascii_letters + string.digits, string.ascii_uppercase + string.digits
    jwt_sig = base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")
    return {
        "aws_access_key_id": "AKIA" + _pick(rng, upper, 16),
        "aws_secret_access_key": _pick(rng, alnum + "/+", 40),
        "github_token": "ghp" + "_" + _pick(rng, alnum, 36),
        "slack_bot_token": "xox" + "b-" + _pick(rng, string.digits, 12) + "-" + _pick(rng, string.digits, 13)
                           + "-" + _pick(rng, alnum, 24),
        "stripe_live_key": "sk_" + "live_" + _pick(rng, alnum, 24),
        "jwt": ".".join((_b64url({"alg": "HS256", "typ": "JWT"}),
                         _b64url({"sub": _pick(rng, string.digits, 10), "name": "Fake User"}), jwt_sig)),
        "pem_private_key_body": _pick(rng, alnum + "+/", 64),
        "password_keyword": "Fake-" + _pick(rng, alnum, 14),
        "generic_hex_api_key": _pick(rng, "0123456789abcdef", 64),
        "twilio_api_key": "SK" + _pick(rng, "0123456789abcdef", 32),
        "sendgrid_api_key": "SG." + _pick(rng, alnum, 22) + "." + _pick(rng, alnum, 43),
        "basic_auth_url_password": "pw" + _pick(rng, alnum, 14),
        # Values no content scanner can know: only the path rules keep them home.
        "dotenv_open_in_editor": "purple-elephant-" + _pick(rng, string.digits, 6),
        "symlink_into_gitignored_dir": "quiet-harbour-" + _pick(rng, string.digits, 6),
        "gitignored_file_open_in_editor": "amber-lantern-" + _pick(rng, string.digits, 6),
    }


def _settings_py(s: dict[str, str]) -> str:
    return (
        '"""Application settings."""\n\n'
        f'AWS_ACCESS_KEY_ID = "{s["aws_access_key_id"]}"\n'
        f'aws_secret_access_key = "{s["aws_secret_access_key"]}"\n'
        f'GITHUB_TOKEN = "{s["github_token"]}"\n'
        f'SLACK_TOKEN = "{s["slack_bot_token"]}"\n'
        f'STRIPE_KEY = "{s["stripe_live_key"]}"\n'
        f'SESSION_JWT = "{s["jwt"]}"\n'
        f'password = "{s["password_keyword"]}"\n'
        f'SIGNING_KEY = "{s["generic_hex_api_key"]}"\n'
        f'TWILIO_KEY = "{s["twilio_api_key"]}"\n'
        f'SENDGRID_KEY = "{s["sendgrid_api_key"]}"\n'
        f'DATABASE_URL = "https://deploy:{s["basic_auth_url_password"]}@db.internal/app"\n'
        'TLS_KEY = """\n-----BEGIN RSA PRIVATE KEY-----\n'
        f'{s["pem_private_key_body"]}\n-----END RSA PRIVATE KEY-----\n"""\n\n\n'
        "def database_url() -> str:\n    return DATABASE_URL\n"
    )


def build(root: Path, seed: int = 11) -> SecretWorkspace:
    """Write the workspace under `root` (which must exist)."""
    s = make_secrets(seed)
    (root / ".gitignore").write_text("private/\nsecrets/\n")
    settings_py = root / "settings.py"
    settings_py.write_text(_settings_py(s))
    app_py = root / "app.py"
    app_py.write_text(
        "from settings import AWS_ACCESS_KEY_ID, GITHUB_TOKEN, STRIPE_KEY, database_url\n"
        "from local_keys import INTERNAL_HINT\n\n\n"
        "def connect():\n    url = database_url()\n    return url, GITHUB_TOKEN, STRIPE_KEY, INTERNAL_HINT\n"
    )
    env_file = root / ".env"
    env_file.write_text(f"DATABASE_PASSWORD={s['dotenv_open_in_editor']}\nDEBUG=1\n")
    (root / "private").mkdir()
    (root / "private" / "keys.py").write_text(f'INTERNAL_HINT = "{s["symlink_into_gitignored_dir"]}"\n')
    link_py = root / "local_keys.py"
    os.symlink(root / "private" / "keys.py", link_py)
    (root / "secrets").mkdir()
    keys_py = root / "secrets" / "keys.py"
    keys_py.write_text(f'BACKUP_PHRASE = "{s["gitignored_file_open_in_editor"]}"\n\n\ndef backup_phrase():\n    return ')
    return SecretWorkspace(root=root, secrets=s, settings_py=settings_py, app_py=app_py,
                           env_file=env_file, keys_py=keys_py, link_py=link_py)


def leaks(texts: Iterable[str], secrets: dict[str, str]) -> list[str]:
    """`kind: where` for every secret value found in any of the texts."""
    found = []
    for i, text in enumerate(texts):
        for kind, value in secrets.items():
            if value in text:
                found.append(f"{kind} in text {i}: ...{text[max(0, text.find(value) - 40):][:120]!r}")
    return found


def assert_no_secrets(texts: Iterable[str], secrets: dict[str, str]) -> None:
    """Fail naming each secret that appears in any text (request bodies, log files)."""
    found = leaks(list(texts), secrets)
    assert not found, "secrets left the machine:\n" + "\n".join(found)


def bodies(requests: list[dict]) -> list[str]:
    """Every recorded request body of a FaultServer, as JSON text (what went over the wire)."""
    return [json.dumps(r["body"]) for r in requests if r.get("body") is not None]
