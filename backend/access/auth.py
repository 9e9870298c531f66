"""Local accounts for Gradio's sign-in (``launch(auth=...)``): a users file of salted password hashes.

The file (``users_file``, default ``data_dir/users.json``) maps each name to its hash, written by the CLI:

    .venv/bin/python -m backend.access add-user alice            # asks for the password twice
    .venv/bin/python -m backend.access add-user admin --admin     # also an admin (model management, logs)
    .venv/bin/python -m backend.access remove-user alice
    .venv/bin/python -m backend.access list

Hashes are scrypt (``hashlib.scrypt``, RFC 7914) with a random 16-byte salt and the parameters OWASP's
Password Storage Cheat Sheet gives for scrypt (N=2**17, r=8, p=1); the password itself is never stored.
"""

from __future__ import annotations

import argparse
import base64
import copy
import getpass
import hashlib
import hmac
import json
import os
import re
import sys
from pathlib import Path

from backend.storage.disk import write_atomically

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1  # OWASP Password Storage Cheat Sheet, scrypt minimum
SCRYPT_MAXMEM = 256 * 1024 * 1024  # bytes; N * r * 128 = 128 MiB is needed
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")  # also a safe Redis key and folder part
MIN_PASSWORD = 8  # characters


class AuthError(ValueError):
    """A users-file operation failed; ``str(err)`` is one sentence for the user."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A storable hash: ``scrypt$N$r$p$salt$hash`` (base64 salt and 32-byte hash).

    Args:
        password: the password.
        salt: 16 random bytes (default: fresh from ``os.urandom``).
    """
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=SCRYPT_MAXMEM,
                            dklen=32)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a ``hash_password`` string (constant-time compare); False for a malformed one."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=SCRYPT_MAXMEM, dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


class Users:
    """The users file: ``{"users": {name: {"hash": ..., "admin": bool}}}``.

    Args:
        path: the JSON file (it need not exist yet).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._cache: tuple[tuple[int, int], dict] | None = None  # (mtime_ns, size) -> parsed file

    def _read(self) -> dict:
        """The parsed file (a fresh copy); parsed again only when its mtime or size changed, since admin
        checks run on every turn, upload and page load while the CLI may edit the file at any time."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {"users": {}}
        stamp = (st.st_mtime_ns, st.st_size)
        if self._cache is None or self._cache[0] != stamp:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise AuthError(f"The users file {self.path} is damaged ({exc}); fix it or add the users again."
                                ) from exc
            if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
                raise AuthError(f"The users file {self.path} is damaged (no users object); fix it or add the "
                                "users again.")
            self._cache = (stamp, data)
        return copy.deepcopy(self._cache[1])

    def _write(self, data: dict) -> None:
        """Write atomically, readable by the owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True).encode(), mode=0o600)

    def names(self) -> list[str]:
        """The account names, sorted."""
        return sorted(self._read()["users"])

    def admins(self) -> set[str]:
        """Names of the accounts marked admin in the file."""
        return {n for n, u in self._read()["users"].items() if u.get("admin")}

    def add(self, name: str, password: str, admin: bool = False) -> None:
        """Create an account, or set a new password (and admin flag) for an existing one.

        Raises:
            AuthError: a name with characters other than letters, digits and ``_.@-`` (or over 64), or a
                password under ``MIN_PASSWORD`` characters.
        """
        if not NAME.match(name):
            raise AuthError(f"'{name}' is not a valid user name; use letters, digits and _ . @ - (up to 64).")
        if len(password) < MIN_PASSWORD:
            raise AuthError(f"The password is too short; use at least {MIN_PASSWORD} characters.")
        data = self._read()
        data["users"][name] = {"hash": hash_password(password), "admin": bool(admin)}
        self._write(data)

    def remove(self, name: str) -> bool:
        """Delete an account; returns whether it existed."""
        data = self._read()
        existed = data["users"].pop(name, None) is not None
        if existed:
            self._write(data)
        return existed

    def check(self, name: str, password: str) -> bool:
        """Gradio's ``auth`` callable: whether this name and password sign in."""
        user = self._read()["users"].get(name)
        return bool(user) and verify_password(password, user.get("hash", ""))


def main(argv: list[str] | None = None) -> int:
    """The ``python -m backend.access`` command line (see the module docstring)."""
    from backend.config import Settings

    parser = argparse.ArgumentParser(prog="python -m backend.access", description="Manage the app's local accounts.")
    parser.add_argument("--users-file", type=Path, help="default: the users_file setting (data_dir/users.json)")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-user", help="add a user or change their password")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may manage models and read logs")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    rm = sub.add_parser("remove-user", help="delete a user (their data stays)")
    rm.add_argument("name")
    sub.add_parser("list", help="list the users")
    args = parser.parse_args(argv)
    users = Users(args.users_file or Settings().users_path)
    try:
        if args.command == "add-user":
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = getpass.getpass(f"Password for {args.name}: ")
                if getpass.getpass("Again: ") != password:
                    print("The passwords differ; nothing was changed.", file=sys.stderr)
                    return 1
            users.add(args.name, password, args.admin)
            print(f"Saved {args.name}{' (admin)' if args.admin else ''} in {users.path}.")
        elif args.command == "remove-user":
            print(f"Removed {args.name}." if users.remove(args.name) else f"There is no user {args.name}.")
        else:
            admins = users.admins()
            for name in users.names():
                print(name + (" (admin)" if name in admins else ""))
    except AuthError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0

