"""Revoked keys and changed role bindings, told to every replica's access cache.

``AccessControl`` keeps keys and role bindings for ``auth_cache_ttl_s``. The replica that
makes a change forgets its entry at once; with Redis (``FOVEA_REDIS_URL``) it also publishes
the change on one channel, and every replica forgets the entry on receipt: a revoked key is
refused everywhere within a round trip. Without Redis the other replicas see the change when
their entry expires. A replica that loses its subscription drops its whole cache when it is
back, since it may have missed changes meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging

import redis as sync_redis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from fovea.services.access import AccessControl
from fovea.services.background import BackgroundTasks

log = logging.getLogger(__name__)

CHANNEL = "fovea:access"
RESUBSCRIBE_S = 1.0
POLL_S = 1.0  # how long one read of the subscription waits for a message


def key_revoked(key_id: str) -> dict[str, str]:
    return {"key_id": key_id}


def roles_changed(service_account_id: str, folder_id: str) -> dict[str, str]:
    return {"service_account_id": service_account_id, "folder_id": folder_id}


def announce(redis_url: str, change: dict[str, str], timeout_s: float = 2.0) -> bool:
    """Tell every running replica of a change made outside them (the ``fovea`` CLI, on the
    database directly); False when Redis could not be reached."""
    client = sync_redis.Redis.from_url(
        redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    try:
        client.publish(CHANNEL, json.dumps(change))
        return True
    except (RedisError, OSError):
        return False
    finally:
        client.close()


class AccessChanges:
    """Tells access caches of a revoked key or changed roles: this replica's at once, and every
    other's when Redis is configured."""

    def __init__(self, access: AccessControl, redis: Redis | None = None) -> None:
        self._access = access
        self._redis = redis
        self._tasks = BackgroundTasks()
        # Set while the subscription is live (tests wait for it before a change).
        self.subscribed = asyncio.Event()

    async def key_revoked(self, key_id: str) -> None:
        self._access.forget_key(key_id)
        await self._publish(key_revoked(key_id))

    async def roles_changed(self, service_account_id: str, folder_id: str) -> None:
        self._access.forget_roles(service_account_id, folder_id)
        await self._publish(roles_changed(service_account_id, folder_id))

    def start(self) -> None:
        """Listen to the other replicas' changes (call on the event loop)."""
        if self._redis is not None:
            self._tasks.spawn("access changes", self._listen(self._redis))

    async def aclose(self) -> None:
        await self._tasks.aclose()

    async def _publish(self, change: dict[str, str]) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.publish(CHANNEL, json.dumps(change))
        except RedisError as error:
            # The change is in the database: the others see it once their cache expires.
            log.warning("could not tell the other replicas of an access change: %s", error)

    async def _listen(self, redis: Redis) -> None:
        first = True
        while True:
            try:
                await self._subscribed(redis)
            except (RedisError, OSError) as error:
                if first or self.subscribed.is_set():  # once an outage
                    log.warning(
                        "no subscription to access changes (%s); trying every %g s",
                        error,
                        RESUBSCRIBE_S,
                    )
            finally:
                self.subscribed.clear()
            first = False
            await asyncio.sleep(RESUBSCRIBE_S)

    async def _subscribed(self, redis: Redis) -> None:
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(CHANNEL)
            while True:
                message = await pubsub.get_message(timeout=POLL_S)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    # Changes made while this replica was not listening were missed.
                    self._access.forget_all()
                    self.subscribed.set()
                elif message["type"] == "message":
                    self._apply(message["data"])

    def _apply(self, data: str | bytes) -> None:
        try:
            change = json.loads(data)
        except ValueError:
            log.warning("ignoring a malformed access change: %r", data[:100])
            return
        if "key_id" in change:
            self._access.forget_key(change["key_id"])
        elif "service_account_id" in change and "folder_id" in change:
            self._access.forget_roles(change["service_account_id"], change["folder_id"])
