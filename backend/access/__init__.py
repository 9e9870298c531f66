"""Who may do what: the local accounts (a users file of scrypt hashes, managed with ``python -m
backend.access``), which of them are admins, and the per-user rate limits and quotas kept in Redis
(questions a minute, uploads a day, stored bytes, documents, answers streaming at once).

It owns no documents, chats or caches: the UI asks it whether a user may act, then calls the other
packages under that user's ``owner``.
"""

from backend.access.auth import AuthError, Users, hash_password, verify_password
from backend.access.quotas import QuotaExceeded, Quotas, QuotaSettings

__all__ = ["AuthError", "QuotaExceeded", "QuotaSettings", "Quotas", "Users", "hash_password", "verify_password"]
