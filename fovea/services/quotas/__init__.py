"""Quotas and rate limits per folder and key, enforced across replicas.

``RateLimiter`` (``limiter``) holds the quotas and speaks to clients (429s, headers); it keeps
what folders and keys have used in ``QuotaCounters`` (``counters``): this process's
(``LocalCounters``: one replica, or SQLite), Redis's (``redis_counters``: ``FOVEA_REDIS_URL``)
or the database's (``database_counters``: PostgreSQL without Redis). The shared ones hold each
replica's generation slots under a lease (``shared``), so a killed replica leaks no quota
for longer than ``quota_lease_s``.
"""

from fovea.services.quotas.counters import LocalCounters, QuotaCounters
from fovea.services.quotas.limiter import Admission, RateLimiter

__all__ = ["Admission", "LocalCounters", "QuotaCounters", "RateLimiter"]
