"""Redis online store: the shared store for several API replicas (`COOPSCORE_ONLINE_STORE=redis://...`).

Layout under `prefix` (default `coopscore:online`): `{p}:next` counts generations; `{p}:live` holds
the live generation's number; `{p}:gen:{n}:meta` is a hash with the generation's state, feature names,
feature-set version and as_of; `{p}:gen:{n}:members` is the set of its member ids; and
`{p}:gen:{n}:m:{member_id}` is one hash per member per generation (`t`: as_of in microseconds, `v`: the
vector as little-endian float64 bytes in feature-name order, exactly as SQLite stores it, so NaN and
every float round-trip bit for bit).

A generation is written by a Lua script, 2,000 members a call (HSET, EXPIRE, SADD on the server: one
round trip and one client command per chunk), under a `writing_ttl`, so a crashed materialization
expires on its own; `commit_refresh` persists it and re-points `{p}:live` in one MULTI/EXEC (with WATCH
on the pointer), then gives the previous generation a `retired_ttl`. A read is one Lua script that
resolves the live pointer and fetches every member's hash atomically on the server: one round trip,
never a mix of generations. Committed generations never change, so large reads split into chunks pin
the generation the first chunk saw.

The Lua script builds key names on the server, so this store targets a single Redis (or a primary
with replicas), not Redis Cluster.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, Final, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import redis

from coopscore.settings import BackendUnavailableError, BackendUrl, UnsupportedBackendError
from features.online.base import FeatureBatch, GenerationInfo, MemberVector, OnlineStore, Refresh

_P = ParamSpec("_P")
_R = TypeVar("_R")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_VECTOR_DTYPE: Final = np.dtype("<f8")
_READ_CHUNK: Final = 1_000  # members per script call: bounds how long one call blocks the server
_WRITE_CHUNK: Final = 2_000  # members per write or expire script call (one round trip each)
_OPTIONS: Final = ("prefix", "retired_ttl", "writing_ttl")


def _text(value: bytes | str) -> str:
    """A Redis reply as text (the client returns bytes; typed stubs allow str)."""
    return value.decode() if isinstance(value, bytes) else value


# KEYS: none (keys are derived from the prefix); ARGV[1] prefix, ARGV[2] generation or "" for live,
# ARGV[3..] member ids. Returns {generation, t1, v1, t2, v2, ...} (false for a missing member) or {}.
_READ_SCRIPT: Final = """
local gen = ARGV[2]
if gen == '' then
  gen = redis.call('GET', ARGV[1] .. ':live')
  if not gen then return {} end
end
local base = ARGV[1] .. ':gen:' .. gen .. ':m:'
local out = {gen}
for i = 3, #ARGV do
  local row = redis.call('HMGET', base .. ARGV[i], 't', 'v')
  out[#out + 1] = row[1]
  out[#out + 1] = row[2]
end
return out
"""


# ARGV[1] member key base `{p}:gen:{n}:m:`, ARGV[2] the generation's member set, ARGV[3] TTL seconds,
# ARGV[4] as_of (us), ARGV[5..] member id, vector bytes, ... One call writes a chunk on the server:
# far fewer client-side commands than an HSET + EXPIRE + SADD pipeline per member.
_WRITE_SCRIPT: Final = """
local base, members, ttl, stamp = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
for i = 5, #ARGV, 2 do
  local key = base .. ARGV[i]
  redis.call('HSET', key, 't', stamp, 'v', ARGV[i + 1])
  redis.call('EXPIRE', key, ttl)
  redis.call('SADD', members, ARGV[i])
end
redis.call('EXPIRE', members, ttl)
return (#ARGV - 4) / 2
"""

# ARGV[1] member key base, ARGV[2] TTL seconds or "" to make the keys permanent, ARGV[3..] member ids.
_EXPIRE_SCRIPT: Final = """
local base, ttl = ARGV[1], ARGV[2]
for i = 3, #ARGV do
  if ttl == '' then redis.call('PERSIST', base .. ARGV[i]) else redis.call('EXPIRE', base .. ARGV[i], ttl) end
end
return #ARGV - 2
"""


def _reachable(
    method: Callable[Concatenate[RedisOnlineStore, _P], _R],
) -> Callable[Concatenate[RedisOnlineStore, _P], _R]:
    """Turn Redis's connection errors (refused, timeout, wrong password, no such database) into one
    `BackendUnavailableError` line naming the setting and the redacted URL."""

    def wrapper(store: RedisOnlineStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(store, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError) as error:
            raise store.unavailable(error) from error
        except redis.ResponseError as error:
            text = str(error)
            if text.split(" ", 1)[0] in ("NOAUTH", "WRONGPASS", "NOPERM") or "DB index" in text:
                raise store.unavailable(error) from error
            raise

    return functools.update_wrapper(wrapper, method)


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True)
class RedisOptions:
    """The store's own URL options, split from the connection URL redis-py understands."""

    connection_url: str
    prefix: str = "coopscore:online"
    retired_ttl: int = 86_400  # seconds a retired generation stays readable (readers mid-switch)
    writing_ttl: int = 86_400  # seconds an uncommitted generation lives (a crashed writer's leftovers)

    @classmethod
    def from_url(cls, url: str) -> RedisOptions:
        """Split `redis://[:password@]host:port/db?prefix=..&retired_ttl=..&writing_ttl=..`."""
        parts = urlsplit(url)
        if parts.path.strip("/") and not parts.path.strip("/").isdigit():
            # redis-py would silently fall back to database 0
            raise ValueError(f"database {parts.path.strip('/')!r} is not a number")
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in _OPTIONS}
        rest = [(k, v) for k, v in query if k not in _OPTIONS]
        connection = urlunsplit(parts._replace(query=urlencode(rest)))
        values: dict[str, Any] = {}
        if "prefix" in ours:
            if not ours["prefix"] or any(c in ours["prefix"] for c in " {}"):
                raise ValueError(
                    f"prefix={ours['prefix']!r}: give a non-empty prefix without spaces or braces"
                )
            values["prefix"] = ours["prefix"]
        for name in ("retired_ttl", "writing_ttl"):
            if name in ours:
                try:
                    seconds = int(ours[name])
                except ValueError:
                    seconds = 0
                if seconds < 1:
                    raise ValueError(f"{name}={ours[name]!r}: give a whole number of seconds >= 1")
                values[name] = seconds
        return cls(connection_url=connection, **values)


class RedisOnlineStore(OnlineStore):
    """Online store in one Redis database; one client (a connection pool) shared by threads.

    Args:
        url: `redis://` or `rediss://` URL, with the store's options `prefix`, `retired_ttl` and
            `writing_ttl` (seconds) in its query string.
    """

    def __init__(
        self, url: str, *, socket_timeout: float = 5.0, setting: str = "COOPSCORE_ONLINE_STORE"
    ) -> None:
        # Errors name the setting and the URL without its password: `COOPSCORE_ONLINE_STORE=redis://:***@...`.
        self.where = f"{setting}={BackendUrl.parse(setting, url).redacted}"
        try:
            self.options = RedisOptions.from_url(url)
            self.client: redis.Redis = redis.Redis.from_url(
                self.options.connection_url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
            )
        except ValueError as error:  # a port or database that is not a number, an unknown option value
            raise UnsupportedBackendError(
                f"{self.where}: {error} (write redis://[:PASSWORD@]HOST:PORT/DB?prefix=NAME)"
            ) from error
        self.prefix = self.options.prefix
        self._read = self.client.register_script(_READ_SCRIPT)
        self._write = self.client.register_script(_WRITE_SCRIPT)
        self._expire = self.client.register_script(_EXPIRE_SCRIPT)
        # generation -> (feature names, feature-set version); committed generations never change.
        self._generations: dict[int, tuple[tuple[str, ...], str]] = {}

    # ---- keys ----

    def _key(self, *parts: object) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def _member_key(self, generation: int, member_id: str) -> str:
        return f"{self.prefix}:gen:{generation}:m:{member_id}"

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def unavailable(self, error: BaseException) -> BackendUnavailableError:
        """The one-line error for a Redis that does not answer or refuses us."""
        reason = " ".join(str(error).split()).rstrip(".") or type(error).__name__
        return BackendUnavailableError(
            f"{self.where}: Redis is unreachable or refused us ({reason}); start it, or fix the host, port, "
            "database or password in the URL"
        )

    @_reachable
    def ping(self) -> None:
        """Check the server answers (the factory calls it, so a command fails at open, in one line)."""
        self.client.ping()

    # ---- writing ----

    @_reachable
    def begin_refresh(
        self, *, feature_names: Sequence[str], feature_set_version: str, as_of: datetime
    ) -> Refresh:
        """Number a new generation and record it as `writing` (it expires unless committed)."""
        names = tuple(feature_names)
        if len(set(names)) != len(names) or not names:
            raise ValueError("feature names must be unique and non-empty")
        generation = int(self.client.incr(self._key("next")))
        meta = self._key("gen", generation, "meta")
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(
            meta,
            mapping={
                "state": "writing",
                "feature_set_version": feature_set_version,
                "feature_names": json.dumps(names),
                "as_of_us": _to_us(as_of),
                "created_at": datetime.now(UTC).isoformat(),
            },
        )
        pipe.expire(meta, self.options.writing_ttl)
        pipe.execute()
        return Refresh(
            generation=generation, feature_names=names, feature_set_version=feature_set_version, as_of=as_of
        )

    def _state(self, generation: int) -> str | None:
        state = self.client.hget(self._key("gen", generation, "meta"), "state")
        return None if state is None else _text(state)

    @_reachable
    def online_write_batch(self, refresh: Refresh, batch: FeatureBatch) -> None:
        """The batch's member hashes (each under the writing TTL), 2,000 members per script call."""
        if batch.feature_names != refresh.feature_names:
            raise ValueError("batch features differ from the refresh's features")
        gen = refresh.generation
        if self._state(gen) != "writing":
            raise ValueError(f"generation {gen} is not being written")
        as_of_us = _to_us(batch.as_of)
        values = np.ascontiguousarray(batch.values, dtype=_VECTOR_DTYPE)
        members = self._key("gen", gen, "members")
        base = self._member_key(gen, "")
        ttl = self.options.writing_ttl
        for start in range(0, len(batch.member_ids), _WRITE_CHUNK):
            chunk = batch.member_ids[start : start + _WRITE_CHUNK]
            args: list[str | bytes | int] = [base, members, ttl, as_of_us]
            for offset, member_id in enumerate(chunk):
                args += (member_id, values[start + offset].tobytes())
            self._write(args=args)

    def _expire_generation(self, generation: int, seconds: int | None) -> None:
        """Give every key of a generation a TTL (None: make them permanent), a chunk per script call."""
        members = self._key("gen", generation, "members")
        base = self._member_key(generation, "")
        ttl = "" if seconds is None else str(seconds)
        chunk: list[str] = []
        for raw in self.client.sscan_iter(members, count=_WRITE_CHUNK):
            chunk.append(bytes(raw).decode())
            if len(chunk) == _WRITE_CHUNK:
                self._expire(args=[base, ttl, *chunk])
                chunk = []
        if chunk:
            self._expire(args=[base, ttl, *chunk])
        pipe = self.client.pipeline(transaction=False)
        for key in (members, self._key("gen", generation, "meta")):
            if seconds is None:
                pipe.persist(key)
            else:
                pipe.expire(key, seconds)
        pipe.execute()

    def commit_refresh(self, refresh: Refresh) -> GenerationInfo:
        """Persist the generation, switch `{p}:live` to it in one MULTI/EXEC, expire the old one."""
        gen = refresh.generation
        if self._state(gen) != "writing":
            raise ValueError(f"generation {gen} is not being written")
        self._expire_generation(gen, None)  # still invisible: no reader resolves this generation yet
        live_key = self._key("live")
        count = int(self.client.scard(self._key("gen", gen, "members")))
        committed_at = datetime.now(UTC)
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(live_key)
                    old = pipe.get(live_key)
                    pipe.multi()
                    pipe.set(live_key, gen)
                    pipe.hset(
                        self._key("gen", gen, "meta"),
                        mapping={
                            "state": "live",
                            "member_count": count,
                            "committed_at": committed_at.isoformat(),
                        },
                    )
                    if old is not None:
                        pipe.hset(self._key("gen", int(old), "meta"), "state", "retired")
                    pipe.execute()
                    break
                except redis.WatchError:  # another writer committed meanwhile: retire theirs instead
                    continue
        if old is not None:
            self._expire_generation(int(old), self.options.retired_ttl)
        return GenerationInfo(
            generation=gen,
            feature_set_version=refresh.feature_set_version,
            as_of=refresh.as_of,
            feature_names=refresh.feature_names,
            member_count=count,
            committed_at=committed_at,
        )

    @_reachable
    def abort_refresh(self, refresh: Refresh) -> None:
        """Delete the unfinished generation's keys; the live generation is untouched."""
        gen = refresh.generation
        if self._state(gen) != "writing":
            return
        members = self._key("gen", gen, "members")
        pipe = self.client.pipeline(transaction=False)
        for raw in self.client.sscan_iter(members, count=1_000):
            pipe.unlink(self._member_key(gen, bytes(raw).decode()))
        pipe.unlink(members)
        pipe.hset(self._key("gen", gen, "meta"), "state", "aborted")
        pipe.execute()

    # ---- reading ----

    def _generation_meta(self, gen: int) -> tuple[tuple[str, ...], str]:
        meta = self._generations.get(gen)
        if meta is None:
            names, version = self.client.hmget(
                self._key("gen", gen, "meta"), ["feature_names", "feature_set_version"]
            )
            if names is None or version is None:
                raise LookupError(f"{self.prefix}: generation {gen} has no metadata (expired?)")
            meta = (tuple(json.loads(names)), _text(version))
            self._generations[gen] = meta
        return meta

    @_reachable
    def online_read(self, member_ids: Sequence[str]) -> list[MemberVector | None]:
        """Live vectors in the order asked: one server-side script call per 1,000 distinct ids."""
        unique = list(dict.fromkeys(member_ids))
        found: dict[str, MemberVector] = {}
        pinned = ""
        for start in range(0, len(unique), _READ_CHUNK):
            chunk = unique[start : start + _READ_CHUNK]
            reply = self._read(args=[self.prefix, pinned, *chunk])
            if not reply:
                return [None] * len(member_ids)  # nothing committed yet
            gen = int(reply[0])
            pinned = str(gen)
            names, version = self._generation_meta(gen)
            for i, member_id in enumerate(chunk):
                stamp, blob = reply[1 + 2 * i], reply[2 + 2 * i]
                if stamp is None or blob is None:
                    continue
                found[member_id] = MemberVector(
                    member_id=member_id,
                    as_of=_from_us(int(stamp)),
                    feature_set_version=version,
                    features=dict(zip(names, np.frombuffer(blob, dtype=_VECTOR_DTYPE).tolist(), strict=True)),
                )
        return [found.get(m) for m in member_ids]

    def _live(self) -> int | None:
        raw = self.client.get(self._key("live"))
        return None if raw is None else int(raw)

    @_reachable
    def member_ids(self, limit: int) -> list[str]:
        """Up to `limit` member ids of the live generation (set order)."""
        gen = self._live()
        if gen is None or limit <= 0:
            return []
        ids: list[str] = []
        for raw in self.client.sscan_iter(self._key("gen", gen, "members"), count=max(limit, 10)):
            ids.append(bytes(raw).decode())
            if len(ids) >= limit:
                break
        return ids

    @_reachable
    def live_generation(self) -> GenerationInfo | None:
        """The live generation's metadata, or None before the first committed refresh."""
        gen = self._live()
        if gen is None:
            return None
        raw = {_text(k): _text(v) for k, v in self.client.hgetall(self._key("gen", gen, "meta")).items()}
        return GenerationInfo(
            generation=gen,
            feature_set_version=raw["feature_set_version"],
            as_of=_from_us(int(raw["as_of_us"])),
            feature_names=tuple(json.loads(raw["feature_names"])),
            member_count=int(raw["member_count"]),
            committed_at=datetime.fromisoformat(raw["committed_at"]),
        )
