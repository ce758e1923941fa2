#!/usr/bin/python3
"""example_participant.py - a saga participant in Python, written from docs/protocol.md.

It plays one of the example services (inventory, payment or shipping: the same commands,
ledger keys and failure-injection flags as the C examples, see docs/participants.md) with
nothing but python3-confluent-kafka and the standard library: Redis is spoken through the
small RESP client below, so no Redis package is needed.

What it guarantees, as the C SDK does:
  * an effect is applied at most once per idempotency_key (saga_id/step/kind): the dedup
    record and the ledger writes are one Lua script, so a crash between effect and reply
    cannot apply it twice; a repeat is answered with the recorded reply;
  * a compensation whose action was never applied (or failed) is answered ok without the
    handler; the never-applied action is tombstoned, and an action arriving after its
    compensation is refused (failed, retryable false);
  * the reply goes to reply_to.topic / reply_to.partition, keyed by saga_id, through an
    idempotent producer; a command's offset is stored only after its reply was delivered
    (enable.auto.offset.store=false), so a crash re-delivers instead of losing;
  * invalid messages are logged with their offset and skipped (answered "failed" when
    they say where to reply); SIGTERM/SIGINT stop it gracefully.

Run with Debian's interpreter: /usr/bin/python3 example_participant.py --help
"""

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

POLL_S = 0.1
DRAIN_S = 15.0
REDIS_TIMEOUT_S = 10.0
REDIS_BACKOFF_MAX_S = 2.0
CLUSTER_MAX_REDIRECTS = 16
SAGA_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
NOOP_BODY = '{"status":"ok","output":{}}'
REFUSED = "compensated before applied"
BUSY = "action still in progress: retry the compensation later"

# KEYS[1] the command's record, KEYS[2] its action's record. ARGV: kind, retention_s,
# lease_ms, noop body. Same verdicts and record layout as the C SDK (docs/participants.md).
CHECK_LUA = """
local key, akey = KEYS[1], KEYS[2]
local kind, ret, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function claim()
  redis.call('HSET', key, 'state', 'pending', 'lease_until', now + lease, 'updated_at', now)
  redis.call('HINCRBY', key, 'runs', 1)
  redis.call('EXPIRE', key, ret)
end
local s = redis.call('HMGET', key, 'state', 'reply')
if s[1] == 'ok' or s[1] == 'failed' then return {'resend', s[2]} end
if kind == 'action' then
  if s[1] == 'tombstone' then return {'refuse', ''} end
  claim()
  return {'run', ''}
end
local a = redis.call('HMGET', akey, 'state', 'reply', 'lease_until')
if a[1] == 'ok' then claim() return {'run', a[2]} end
if a[1] == 'pending' and tonumber(a[3] or '0') > now then return {'busy', ''} end
local why = 'action failed: nothing to undo'
if a[1] ~= 'failed' then
  why = 'action never applied: nothing to undo, action tombstoned'
  redis.call('HSET', akey, 'state', 'tombstone', 'updated_at', now)
  redis.call('HDEL', akey, 'lease_until', 'reply')
  redis.call('EXPIRE', akey, ret)
end
redis.call('HSET', key, 'state', 'ok', 'reply', ARGV[4], 'updated_at', now, 'noop', why)
redis.call('HDEL', key, 'lease_until')
redis.call('EXPIRE', key, ret)
return {'noop', why}
"""

# KEYS[1] the record, KEYS[2] ledger entries (list), KEYS[3] balance, KEYS[4] by_saga,
# KEYS[5] counts (hashes). ARGV: kind, retention_s, state, reply body, and when state is
# ok and there is a ledger effect: entry JSON, field, delta, saga_id, effect name.
# Re-checks the record first, checks the ledger keys' types before the first write.
RECORD_LUA = """
local key, kind, ret, state, reply = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', key, 'state', 'reply')
if s[1] == 'ok' or s[1] == 'failed' then return {'resend', s[2]} end
if kind == 'action' and s[1] == 'tombstone' then return {'refuse', ''} end
local function put(st, body)
  redis.call('HSET', key, 'state', st, 'reply', body, 'updated_at', now)
  redis.call('HDEL', key, 'lease_until')
  redis.call('EXPIRE', key, ret)
  return {'recorded', body}
end
if state ~= 'ok' or #ARGV < 9 then return put(state, reply) end
local want = {KEYS[2], 'list', KEYS[3], 'hash', KEYS[4], 'hash', KEYS[5], 'hash'}
for i = 1, #want, 2 do
  local ty = redis.call('TYPE', want[i]).ok
  if ty ~= 'none' and ty ~= want[i + 1] then
    return put('retryable', cjson.encode({status='failed', retryable=true,
      error='effect rejected, nothing applied: ' .. want[i] .. ' holds a ' .. ty}))
  end
end
for _, k in ipairs({{KEYS[3], ARGV[6]}, {KEYS[4], ARGV[8]}, {KEYS[5], ARGV[9]}}) do
  local v = redis.call('HGET', k[1], k[2])
  if v and not string.match(v, '^%-?%d+$') then
    return put('retryable', cjson.encode({status='failed', retryable=true,
      error='effect rejected, nothing applied: ' .. k[1] .. ' ' .. k[2] .. ' is not an integer'}))
  end
end
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('HINCRBY', KEYS[3], ARGV[6], ARGV[7])
redis.call('HINCRBY', KEYS[4], ARGV[8], ARGV[7])
redis.call('HINCRBY', KEYS[5], ARGV[9], 1)
return put('ok', reply)
"""


def log(level, msg, saga_id=None):
    """One JSON object per line on stderr, like the C programs."""
    if LEVELS[level] < LEVELS[log.threshold]:
        return
    line = {"ts": int(time.time() * 1000), "level": level, "component": log.component, "msg": msg}
    if saga_id:
        line["saga_id"] = saga_id
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()


LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3}
log.threshold = "info"
log.component = "python-participant"


class RedisError(Exception):
    """Redis answered with an error (not a connection problem)."""


class Redis:
    """A minimal blocking RESP2 client: enough for AUTH, SELECT and EVALSHA/EVAL.

    On a Redis Cluster (cluster=True) every script this participant runs touches keys of
    one hash tag, so one slot: the client talks to the node that serves it, found by
    following MOVED (the slot lives elsewhere now: that node is used from then on), ASK
    (the slot is being migrated and this key moved already: ASKING, then the script, on
    the node named, once) and, when the node in use is lost (a failover), by starting
    again from the seed nodes. TRYAGAIN and CLUSTERDOWN (a migration or a failover under
    way) are raised as ConnectionError, so the caller retries after a pause."""

    def __init__(self, host, port, user=None, password=None, db=0, cluster=False, seeds=(),
                 timeout=REDIS_TIMEOUT_S):
        self.addr = (host, port)
        self.timeout = timeout
        self.user, self.password, self.db = user, password, db
        self.cluster = cluster
        self.seeds = list(seeds) or [(host, port)]
        self.next_seed = 0
        self.sock = None
        self.buf = b""
        self.shas = {}

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None
        self.buf = b""

    def _connect(self):
        self.sock = socket.create_connection(self.addr, timeout=self.timeout)
        self.buf = b""
        if self.password:
            self._call(*(["AUTH", self.user, self.password] if self.user else ["AUTH", self.password]))
        if self.db:
            self._call("SELECT", str(self.db))

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError("redis: bad reply type %r" % kind)

    def _call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self._read()

    def call(self, *args):
        """Runs one command, connecting first if needed. Connection problems raise
        OSError/ConnectionError (the connection is dropped); error replies RedisError."""
        try:
            if not self.sock:
                self._connect()
            return self._call(*args)
        except (OSError, ConnectionError):
            self.close()
            if self.cluster:  # the node may be gone (a failover): start from a seed again
                self.addr = self.seeds[self.next_seed % len(self.seeds)]
                self.next_seed += 1
            raise

    def _script_here(self, src, keys, args, asking=False):
        sha = self.shas.get(src) or hashlib.sha1(src.encode()).hexdigest()
        self.shas[src] = sha
        try:
            if asking:
                self.call("ASKING")
            return self.call("EVALSHA", sha, len(keys), *keys, *args)
        except RedisError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
            if asking:
                self.call("ASKING")
            return self.call("EVAL", src, len(keys), *keys, *args)

    def script(self, src, keys, args):
        if not self.cluster:
            return self._script_here(src, keys, args)
        for _ in range(CLUSTER_MAX_REDIRECTS):
            try:
                return self._script_here(src, keys, args)
            except RedisError as e:
                why = str(e)
                word = why.split(" ", 1)[0]
                if word in ("TRYAGAIN", "CLUSTERDOWN"):
                    raise ConnectionError("redis cluster: %s" % why)
                if word not in ("MOVED", "ASK"):
                    raise
                host, _, port = why.split(" ")[2].rpartition(":")
                target = (host or self.addr[0], int(port))
                if word == "MOVED":
                    self.close()
                    self.addr = target
                    continue
                other = Redis(target[0], target[1], self.user, self.password, timeout=self.timeout)
                other.shas = self.shas
                try:
                    return other._script_here(src, keys, args, asking=True)
                finally:
                    other.close()
        raise ConnectionError("redis cluster: more than %d redirections" % CLUSTER_MAX_REDIRECTS)


class Invalid(Exception):
    """An invalid command; replyable says whether it can be answered."""

    def __init__(self, why, replyable):
        super().__init__(why)
        self.replyable = replyable


def parse_command(raw):
    """Returns the decoded, validated command (a dict), or raises Invalid. An Invalid
    that is replyable carries the partial command in .cmd."""
    try:
        doc = json.loads(raw.decode("utf-8")) if raw is not None else None
    except (UnicodeDecodeError, ValueError) as e:
        raise Invalid("not JSON: %s" % e, False)
    if not isinstance(doc, dict):
        raise Invalid("$: expected an object", False)
    if doc.get("type") != "command":
        raise Invalid('$.type: expected "command"', False)

    def s(name):
        v = doc.get(name)
        return v if isinstance(v, str) and v else None

    if not s("saga_id") or not SAGA_ID_RE.match(doc["saga_id"]):
        raise Invalid("$.saga_id: expected 1-128 chars of [A-Za-z0-9._:-]", False)
    if not s("command_id"):
        raise Invalid("$.command_id: expected a non-empty string", False)
    rt = doc.get("reply_to")
    if not isinstance(rt, dict) or not isinstance(rt.get("topic"), str) or not rt["topic"]:
        raise Invalid("$.reply_to.topic: expected a non-empty string", False)
    part = rt.get("partition")
    if not isinstance(part, int) or isinstance(part, bool) or part < 0:
        raise Invalid("$.reply_to.partition: expected an integer >= 0", False)
    att = doc.get("attempt")
    cmd = {"doc": doc, "command_id": doc["command_id"], "saga_id": doc["saga_id"],
           "reply_topic": rt["topic"], "reply_partition": part, "step": s("step"),
           "kind": doc.get("kind") if doc.get("kind") in ("action", "compensation") else None,
           "attempt": att if isinstance(att, int) and not isinstance(att, bool) and att >= 1 else None}

    def bad(why):
        e = Invalid(why, True)
        e.cmd = cmd
        return e

    if not cmd["step"]:
        raise bad("$.step: expected a non-empty string")
    if not cmd["kind"]:
        raise bad('$.kind: expected "action" or "compensation"')
    if not cmd["attempt"]:
        raise bad("$.attempt: expected an integer >= 1")
    if not s("command"):
        raise bad("$.command: expected a non-empty string")
    cmd["type"] = doc["command"]
    payload = doc.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise bad("$.payload: expected an object")
    cmd["payload"] = payload or {}
    cmd["key"] = "%s/%s/%s" % (cmd["saga_id"], cmd["step"], cmd["kind"])
    cmd["action_key"] = "%s/%s/action" % (cmd["saga_id"], cmd["step"])
    if "idempotency_key" in doc and doc["idempotency_key"] != cmd["key"]:
        raise bad('$.idempotency_key: expected "%s" (saga_id/step/kind)' % cmd["key"])
    return cmd


def reply_for(cmd, body):
    """The reply message: the echo fields of cmd plus body (status, output | error...)."""
    r = {"type": "reply", "command_id": cmd["command_id"], "saga_id": cmd["saga_id"]}
    for f in ("step", "kind", "attempt"):
        if cmd.get(f):
            r[f] = cmd[f]
    r.update(body)
    return r


def failed(error, retryable=False):
    return {"status": "failed", "error": error, "retryable": retryable}


def stable_id(prefix, cmd):
    return prefix + hashlib.sha256(cmd["key"].encode()).hexdigest()[:16]


def draw(seed, salt, key):
    """A deterministic draw in [0, 1) for (seed, salt, key)."""
    h = hashlib.sha256(("%d/%s/%s" % (seed, salt, key)).encode()).digest()
    return int.from_bytes(h[:7], "big") / float(1 << 56)


def field_matches(payload, field, value):
    v = payload.get(field)
    if v is None or isinstance(v, (dict, list)):
        return False
    return (v if isinstance(v, str) else json.dumps(v)) == value


class Effect:
    """A ledger effect: what the handler's result applies atomically with its record."""

    def __init__(self, effect, field, delta, details):
        self.effect, self.field, self.delta, self.details = effect, field, delta, details


def as_int(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.match(r"^-?\d+$", v):
        return int(v)
    return None


def as_number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v) if isinstance(v, str) else None
    except ValueError:
        return None


# ---- the services: each handler returns (body, effect or None) ----

def inventory_reserve(cmd, done):
    p = cmd["payload"]
    sku, qty = p.get("sku"), as_int(p.get("qty"))
    if not isinstance(sku, str) or not sku:
        return failed("payload.sku: expected a non-empty string"), None
    if qty is None or qty < 1:
        return failed("payload.qty: expected an integer >= 1"), None
    rid = stable_id("r-", cmd)
    details = {"reservation_id": rid}
    if "order_id" in p:
        details["order_id"] = p["order_id"]
    return ({"status": "ok", "output": {"reservation_id": rid, "sku": sku, "qty": qty}},
            Effect("reserve", sku, qty, details))


def inventory_release(cmd, done):
    sku, qty, rid = done.get("sku"), as_int(done.get("qty")), done.get("reservation_id")
    if not isinstance(sku, str) or qty is None or not isinstance(rid, str):
        return failed("the reservation's recorded output lacks sku, qty or reservation_id"), None
    asked = cmd["payload"].get("reservation_id")
    if isinstance(asked, str) and asked != rid:
        return failed("payload.reservation_id %s is not this step's reservation %s" % (asked, rid)), None
    return ({"status": "ok", "output": {"reservation_id": rid, "released": qty}},
            Effect("release", sku, -qty, {"reservation_id": rid}))


def payment_charge(cmd, done):
    p = cmd["payload"]
    amount = as_number(p.get("amount"))
    if amount is None or not amount > 0:
        return failed("payload.amount: expected a number > 0"), None
    cents = int(round(amount * 100))
    pid = stable_id("p-", cmd)
    details = {"payment_id": pid}
    if "order_id" in p:
        details["order_id"] = p["order_id"]
    return ({"status": "ok", "output": {"payment_id": pid, "amount": cents / 100.0, "amount_cents": cents}},
            Effect("charge", "charged_cents", cents, details))


def payment_refund(cmd, done):
    pid, cents = done.get("payment_id"), as_int(done.get("amount_cents"))
    if not isinstance(pid, str) or cents is None:
        return failed("the charge's recorded output lacks payment_id or amount_cents"), None
    asked = cmd["payload"].get("payment_id")
    if isinstance(asked, str) and asked != pid:
        return failed("payload.payment_id %s is not this step's payment %s" % (asked, pid)), None
    rid = stable_id("rf-", cmd)
    return ({"status": "ok", "output": {"refund_id": rid, "payment_id": pid, "amount": cents / 100.0}},
            Effect("refund", "charged_cents", -cents, {"payment_id": pid, "refund_id": rid}))


def shipping_schedule(cmd, done):
    p = cmd["payload"]
    address = p.get("address")
    if not ((isinstance(address, str) and address) or isinstance(address, dict)):
        return failed("payload.address: expected a non-empty string or an object"), None
    sid = stable_id("s-", cmd)
    details = {"shipment_id": sid, "address": address}
    if "order_id" in p:
        details["order_id"] = p["order_id"]
    return {"status": "ok", "output": {"shipment_id": sid}}, Effect("schedule", "scheduled", 1, details)


def shipping_cancel(cmd, done):
    sid = done.get("shipment_id")
    if not isinstance(sid, str):
        return failed("the schedule's recorded output lacks shipment_id"), None
    asked = cmd["payload"].get("shipment_id")
    if isinstance(asked, str) and asked != sid:
        return failed("payload.shipment_id %s is not this step's shipment %s" % (asked, sid)), None
    return ({"status": "ok", "output": {"shipment_id": sid, "cancelled": True}},
            Effect("cancel", "scheduled", -1, {"shipment_id": sid}))


SERVICES = {
    "inventory": {"inventory.reserve": inventory_reserve, "inventory.release": inventory_release},
    "payment": {"payment.charge": payment_charge, "payment.refund": payment_refund},
    "shipping": {"shipping.schedule": shipping_schedule, "shipping.cancel": shipping_cancel},
}


class Participant:
    def __init__(self, args):
        self.args = args
        self.service = args.service
        self.handlers = SERVICES[args.service]
        self.prefix = args.dedup_prefix or "dedup:{%s}:" % args.service
        self.ledger = ["ledger:{%s}:%s" % (args.service, k) for k in ("entries", "balance", "by_saga", "counts")]
        self.redis = Redis(args.redis_host, args.redis_port, args.redis_user, args.redis_password, args.redis_db,
                           cluster=args.redis_cluster, seeds=args.seeds,
                           timeout=args.redis_timeout_ms / 1000.0)
        self.stop = False
        self.fatal = False
        self.entries = []  # [topic, partition, offset, state] in consumption order
        common = {"bootstrap.servers": args.bootstrap, "client.id": args.client_id or args.group,
                  "error_cb": self.on_error}
        cprops = dict(common, **{"group.id": args.group, "session.timeout.ms": 10000,
                                 "enable.auto.commit": True, "auto.commit.interval.ms": 1000,
                                 "auto.offset.reset": "earliest",
                                 # a short fetch wait: see fetch.wait.max.ms in docs/participants.md
                                 "fetch.wait.max.ms": 10, "fetch.error.backoff.ms": 10})
        pprops = dict(common, **{"linger.ms": 1})
        for kv in args.kafka:
            k, _, v = kv.partition("=")
            if k.startswith("consumer."):
                cprops[k[9:]] = v
            elif k.startswith("producer."):
                pprops[k[9:]] = v
            else:
                cprops[k] = v
                pprops[k] = v
        cprops["enable.auto.offset.store"] = False  # stored only after the reply is delivered
        pprops["enable.idempotence"] = True
        self.consumer = Consumer(cprops)
        self.producer = Producer(pprops)

    def on_error(self, err):
        if err.fatal():
            log("error", "kafka fatal error: %s" % err.str())
            self.fatal = True
        else:
            log("warn", "kafka %s: %s" % (err.name(), err.str()))

    # ---- offsets ----
    def advance(self):
        """Stores the offsets of the done prefix of the entries."""
        while self.entries and self.entries[0][3] in ("done", "abandoned"):
            topic, part, off, state = self.entries.pop(0)
            if state == "done":
                try:
                    self.consumer.store_offsets(offsets=[TopicPartition(topic, part, off + 1)])
                except KafkaException as e:  # revoked meanwhile: the next owner re-consumes it
                    log("debug", "offset %s[%d]@%d not stored: %s" % (topic, part, off, e))

    def drain(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while self.entries and not self.fatal and time.monotonic() < deadline:
            self.producer.poll(0.05)
            self.advance()
        if self.entries:
            log("warn", "replies still undelivered: their commands will be consumed again")

    def on_revoke(self, consumer, partitions):
        log("info", "revoking %d partition(s)" % len(partitions))
        self.drain(10.0)
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as e:
            if e.args[0].code() != KafkaError._NO_OFFSET:
                log("warn", "commit on revocation: %s" % e)

    def on_assign(self, consumer, partitions):
        log("info", "assigned %d partition(s) of %s" % (len(partitions), self.args.topic))

    # ---- Redis with retries ----
    def script(self, src, keys, args):
        """Runs a script, retrying while Redis is unreachable. Returns None when stopping."""
        delay = 0.1
        while True:
            try:
                return self.redis.script(src, keys, args)
            except (OSError, ConnectionError) as e:
                log("warn", "redis %s:%d: %s" % (self.redis.addr[0], self.redis.addr[1], e))
            end = time.monotonic() + delay
            while time.monotonic() < end:
                if self.stop or self.fatal:
                    return None
                self.producer.poll(0.05)
                self.advance()
            delay = min(delay * 2, REDIS_BACKOFF_MAX_S)

    # ---- one command ----
    def inject(self, cmd):
        """The failure injection of the flags; returns a failed body or None."""
        a = self.args
        if cmd["kind"] == "compensation":
            if cmd["attempt"] <= a.fail_compensation_times:
                return failed("injected compensation failure (attempt %d of the first %d)"
                              % (cmd["attempt"], a.fail_compensation_times), True)
            return None
        delay = a.delay_ms
        for field, value, ms in a.delay_on:
            if field_matches(cmd["payload"], field, value):
                delay = ms
        end = time.monotonic() + delay / 1000.0
        while time.monotonic() < end and not self.stop:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))
        for field, value in a.fail_on:
            if field_matches(cmd["payload"], field, value):
                return failed("injected failure: %s=%s" % (field, value))
        if a.fail_rate > 0 and draw(a.seed, "fail", cmd["key"]) < a.fail_rate:
            return failed("injected failure (fail-rate)")
        if a.fail_retryable_rate > 0 and draw(a.seed, "retry", cmd["command_id"]) < a.fail_retryable_rate:
            return failed("injected retryable failure (fail-retryable-rate)", True)
        return None

    def decide(self, cmd, handler):
        """The reply body for a valid command, or None when stopping with Redis down."""
        key, akey = self.prefix + cmd["key"], self.prefix + cmd["action_key"]
        ret, lease = str(self.args.dedup_retention), str(self.args.lease_ms)
        try:
            r = self.script(CHECK_LUA, [key, akey], [cmd["kind"], ret, lease, NOOP_BODY])
        except RedisError as e:
            log("error", "redis check script: %s" % e, cmd["saga_id"])
            return failed("participant store error", True)
        if r is None:
            return None
        verdict, data = r
        if verdict == "resend":
            log("info", "%s: repeat; recorded reply sent again" % cmd["command_id"], cmd["saga_id"])
            return json.loads(data)
        if verdict == "refuse":
            return failed(REFUSED)
        if verdict == "busy":
            return failed(BUSY, True)
        if verdict == "noop":
            log("info", "%s: ok without the handler: %s" % (cmd["command_id"], data), cmd["saga_id"])
            return json.loads(NOOP_BODY)
        done = {}
        if cmd["kind"] == "compensation":
            done = (json.loads(data) or {}).get("output") or {}
        body, effect = self.inject(cmd), None
        if body is None:
            try:
                body, effect = handler(cmd, done)
            except Exception as e:  # a handler bug must not kill the participant
                log("error", "handler %s raised %r" % (cmd["type"], e), cmd["saga_id"])
                body, effect = failed("handler error: %s" % e, True), None
        # A compensation's failure is never final: an operator's retry must run it again.
        state = "ok" if body["status"] == "ok" else (
            "retryable" if body.get("retryable") or cmd["kind"] == "compensation" else "failed")
        args = [cmd["kind"], ret, state, json.dumps(body, separators=(",", ":"))]
        if state == "ok" and effect:
            entry = {"saga_id": cmd["saga_id"], "step": cmd["step"], "kind": cmd["kind"],
                     "command_id": cmd["command_id"], "effect": effect.effect, "field": effect.field,
                     "delta": effect.delta, "ts": int(time.time() * 1000)}
            for k, v in effect.details.items():
                entry.setdefault(k, v)
            args += [json.dumps(entry, separators=(",", ":")), effect.field, str(effect.delta),
                     cmd["saga_id"], effect.effect]
        try:
            r = self.script(RECORD_LUA, [key] + self.ledger, args)
        except RedisError as e:
            log("error", "redis record script: %s" % e, cmd["saga_id"])
            return failed("participant store error", True)
        if r is None:
            return None
        verdict, data = r
        if verdict == "refuse":
            return failed(REFUSED)
        return json.loads(data)

    def handle(self, msg):
        entry = [msg.topic(), msg.partition(), msg.offset(), "waiting"]
        self.entries.append(entry)
        where = "%s[%d]@%d" % tuple(entry[:3])
        try:
            cmd = parse_command(msg.value())
            handler = self.handlers.get(cmd["type"])
            if handler is None:
                log("warn", "unknown command type %s at %s" % (cmd["type"], where), cmd["saga_id"])
                body = failed("unknown command type %s" % cmd["type"])
            else:
                body = self.decide(cmd, handler)
                if body is None:
                    entry[3] = "abandoned"
                    return
        except Invalid as e:
            if not e.replyable:
                log("warn", "invalid command at %s skipped: %s" % (where, e))
                entry[3] = "done"
                return
            cmd = e.cmd
            log("warn", "invalid command at %s answered failed: %s" % (where, e), cmd["saga_id"])
            body = failed("invalid command: %s" % e)
        self.produce(entry, cmd, json.dumps(reply_for(cmd, body), separators=(",", ":")))

    def produce(self, entry, cmd, value):
        def delivered(err, _msg):
            if err is None:
                entry[3] = "done"
            elif err.fatal():
                log("error", "producer fatal error: %s" % err.str())
                self.fatal = True
            elif err.code() in (KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC,
                                KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.MSG_SIZE_TOO_LARGE,
                                KafkaError.TOPIC_AUTHORIZATION_FAILED):
                log("error", "reply to %s[%d] cannot be delivered: %s"
                    % (cmd["reply_topic"], cmd["reply_partition"], err.str()))
                entry[3] = "done"
            else:
                log("warn", "reply not delivered (%s): producing it again" % err.str())
                self.produce(entry, cmd, value)

        while True:
            try:
                self.producer.produce(cmd["reply_topic"], value=value, key=cmd["saga_id"],
                                      partition=cmd["reply_partition"], on_delivery=delivered)
                return
            except BufferError:
                self.producer.poll(0.1)
            except KafkaException as e:
                log("error", "reply to %s cannot be produced: %s" % (cmd["reply_topic"], e))
                entry[3] = "done"
                return

    def run(self):
        self.consumer.subscribe([self.args.topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
        log("info", "consuming %s" % self.args.topic)
        while not self.stop and not self.fatal:
            msg = self.consumer.poll(POLL_S)
            if msg is not None:
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        log("warn", "consumer: %s" % msg.error().str())
                else:
                    self.handle(msg)
            self.producer.poll(0)
            self.advance()
        log("info", "stopping: flushing replies and committing offsets")
        self.drain(DRAIN_S)
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as e:
            if e.args[0].code() != KafkaError._NO_OFFSET:
                log("warn", "commit at shutdown: %s" % e)
        self.consumer.close()
        self.redis.close()
        log("info", "stopped")
        return 1 if self.fatal else 0


def rule(with_ms):
    def parse(s):
        field, eq, rest = s.partition("=")
        if not field or not eq:
            raise argparse.ArgumentTypeError("expected FIELD=VALUE" + (":MS" if with_ms else ""))
        if not with_ms:
            return field, rest
        value, colon, ms = rest.rpartition(":")
        if not colon or not ms.isdigit():
            raise argparse.ArgumentTypeError("expected FIELD=VALUE:MS")
        return field, value, int(ms)
    return parse


def rate(s):
    v = float(s)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError("expected 0..1")
    return v


def parse_args(argv):
    env = os.environ.get
    ap = argparse.ArgumentParser(description="Example saga participant in Python (docs/participants.md).")
    ap.add_argument("--service", choices=sorted(SERVICES), default=env("SAGA_SERVICE", "inventory"))
    ap.add_argument("--bootstrap", default=env("SAGA_BOOTSTRAP_SERVERS"), help="Kafka bootstrap servers [SAGA_BOOTSTRAP_SERVERS]")
    ap.add_argument("--group", default=env("SAGA_GROUP"), help="consumer group (default SERVICE-service)")
    ap.add_argument("--topic", default=env("SAGA_COMMAND_TOPIC"), help="command topic (default SERVICE.commands)")
    ap.add_argument("--client-id", default=env("SAGA_CLIENT_ID"))
    ap.add_argument("--redis-host", default=env("SAGA_REDIS_HOST", "127.0.0.1"))
    ap.add_argument("--redis-port", type=int, default=int(env("SAGA_REDIS_PORT", "6379")))
    ap.add_argument("--redis-user", default=env("SAGA_REDIS_USER"))
    ap.add_argument("--redis-password", default=env("SAGA_REDIS_PASSWORD"))
    ap.add_argument("--redis-db", type=int, default=int(env("SAGA_REDIS_DB", "0")))
    ap.add_argument("--redis-timeout-ms", type=int, default=int(env("SAGA_REDIS_TIMEOUT_MS", "10000")),
                    help="how long one Redis command may take before the connection is "
                         "dropped and tried again (100..600000) [SAGA_REDIS_TIMEOUT_MS]")
    ap.add_argument("--redis-cluster", type=int, choices=(0, 1), default=int(env("SAGA_REDIS_CLUSTER", "0")),
                    help="1 = a Redis Cluster: the scripts go to the node serving the slot of the "
                         "dedup prefix's hash tag, which the ledger keys share [SAGA_REDIS_CLUSTER]")
    ap.add_argument("--redis-cluster-nodes", default=env("SAGA_REDIS_CLUSTER_NODES"),
                    help="seed nodes HOST:PORT[,HOST:PORT...] (default --redis-host:--redis-port) "
                         "[SAGA_REDIS_CLUSTER_NODES]")
    ap.add_argument("--dedup-prefix", default=env("SAGA_DEDUP_PREFIX"))
    ap.add_argument("--dedup-retention", type=int, default=int(env("SAGA_DEDUP_RETENTION_S", str(7 * 24 * 3600))))
    ap.add_argument("--lease-ms", type=int, default=int(env("SAGA_LEASE_MS", "60000")))
    ap.add_argument("-X", "--kafka", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--log-level", choices=sorted(LEVELS), default=env("SAGA_LOG_LEVEL", "info"))
    ap.add_argument("--seed", type=int, default=int(env("SAGA_SEED", "1")))
    ap.add_argument("--fail-rate", type=rate, default=rate(env("SAGA_FAIL_RATE", "0")))
    ap.add_argument("--fail-retryable-rate", type=rate, default=rate(env("SAGA_FAIL_RETRYABLE_RATE", "0")))
    ap.add_argument("--fail-on", type=rule(False), action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--delay-ms", type=int, default=int(env("SAGA_DELAY_MS", "0")))
    ap.add_argument("--delay-on", type=rule(True), action="append", default=[], metavar="FIELD=VALUE:MS")
    ap.add_argument("--fail-compensation-times", type=int, default=int(env("SAGA_FAIL_COMPENSATION_TIMES", "0")))
    args = ap.parse_args(argv)
    if not args.bootstrap:
        ap.error("--bootstrap (or SAGA_BOOTSTRAP_SERVERS) is required")
    if not 100 <= args.redis_timeout_ms <= 600000:
        ap.error("--redis-timeout-ms %d is not within 100..600000" % args.redis_timeout_ms)
    args.group = args.group or "%s-service" % args.service
    args.topic = args.topic or "%s.commands" % args.service
    args.seeds = []
    if args.redis_cluster:
        if args.redis_db != 0:
            ap.error("--redis-db %d with --redis-cluster 1: a Redis Cluster has only database 0" % args.redis_db)
        tag = "{%s}" % args.service
        if args.dedup_prefix is not None and tag not in args.dedup_prefix:
            ap.error("--dedup-prefix %r: on a Redis Cluster the dedup records and the ledger keys "
                     "(ledger:%s:...) must share one slot, so the prefix must hold the tag %s"
                     % (args.dedup_prefix, tag, tag))
        for item in (args.redis_cluster_nodes or "").split(","):
            host, _, port = item.strip().rpartition(":")
            if item.strip() and (not host or not port.isdigit()):
                ap.error("--redis-cluster-nodes %r is not HOST:PORT[,HOST:PORT...]" % args.redis_cluster_nodes)
            if item.strip():
                args.seeds.append((host, int(port)))
    return args


def main(argv):
    args = parse_args(argv)
    log.threshold = args.log_level
    log.component = "python-%s-service" % args.service
    p = Participant(args)

    def on_signal(_sig, _frame):
        p.stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return p.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
